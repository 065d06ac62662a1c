// The live wallboard: the node pushes a new board (server-sent events) whenever an agent or a call changes.
"use strict";
(function () {
  const states = JSON.parse(document.getElementById("board").dataset.states);
  const $ = (id) => document.getElementById(id);

  function cell(content) {
    const td = document.createElement("td");
    td.textContent = content;
    return td;
  }

  function show(board) {
    for (const key of ["ringing", "talking", "contacts", "promises", "abandoned"]) $(key).textContent = board[key];
    $("abandon_rate").textContent = (board.abandon_rate * 100).toFixed(1) + " %";
    $("abandon_rate").classList.toggle("over", board.abandon_rate > board.abandon_limit);
    $("occupancy").textContent = Math.round(board.occupancy * 100) + " %";
    const rows = board.agents.map((agent) => {
      const row = document.createElement("tr");
      row.dataset.agent = agent.agent;
      const state = document.createElement("span");
      state.className = "state";
      state.dataset.state = agent.state;
      state.textContent = states[agent.state] || agent.state;
      const stateCell = cell(" " + (agent.pause_reason || ""));
      stateCell.prepend(state);
      row.append(cell(agent.agent), stateCell, cell(agent.since.slice(11, 19)));
      return row;
    });
    $("agents").replaceChildren(...rows);
  }

  const events = new EventSource("/wallboard/events");
  events.addEventListener("open", () => { $("link").textContent = ""; });
  events.addEventListener("error", () => { $("link").textContent = "…"; });
  events.addEventListener("wallboard", (message) => show(JSON.parse(message.data)));
})();
