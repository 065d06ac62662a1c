// The agent's desk: events pushed by the node (server-sent events), never polled. Text only, never HTML from data.
"use strict";
(function () {
  const desk = document.getElementById("desk");
  const say = JSON.parse(document.getElementById("messages").textContent);
  const csrf = desk.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  let attempt = null;
  let offered = null; // the account preview mode offers this agent now

  function text(tag, content) {
    const node = document.createElement(tag);
    node.textContent = content;
    return node;
  }

  function post(url, fields) {
    const body = new URLSearchParams(fields);
    body.set("csrf", csrf);
    return fetch(url, {method: "POST", body, credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((response) => response.json().then((answer) => {
        if (answer.field === "dialer") $("dialer-down").hidden = false; // nothing changed: the dialer is down
        return {ok: response.ok, answer};
      }));
  }

  function showState(status) {
    const state = $("state");
    state.dataset.state = status.state;
    state.textContent = say["agent.state." + status.state] || status.state;
    $("pause-shown").textContent = status.pause_reason || "";
    if ("dialer_down" in status) $("dialer-down").hidden = !status.dialer_down;
    if (status.state === "ready" || (status.state === "paused" && status.attempt_id === null)) {
      if (attempt !== null && status.attempt_id === null) clearCall();
    }
  }

  function clearCall() {
    attempt = null;
    $("call").hidden = true;
    $("wrap").hidden = true;
    $("waiting").hidden = false;
    $("details").hidden = true;
    $("before-confirm").hidden = false;
    $("promise-fields").hidden = true;
    $("call-note").hidden = true;
    $("refused").hidden = true;
    $("disposition").reset();
    for (const id of ["accounts", "law", "promises", "timeline", "code"]) $(id).replaceChildren();
  }

  function showOffer(offer) {
    offered = offer.account_id;
    $("offer-debtor").textContent = offer.debtor;
    $("offer-phone").textContent = offer.phone;
    $("offer-account").textContent = offer.account;
    $("offer-callback").hidden = !offer.callback;
    $("offer").hidden = false;
  }

  function clearOffer(cleared) {
    if (cleared.reason === "unanswered") { // the agent's call ended without reaching it
      note(say["agent.offer.unanswered"] + " " + (say["outcome." + cleared.outcome] || cleared.outcome || ""));
      return;
    }
    if (cleared.account_id !== offered) return;
    offered = null;
    $("offer").hidden = true;
  }

  function note(message) {
    $("offer-note").textContent = message;
    $("offer-note").hidden = !message;
  }

  function callOffer() {
    if (offered === null) return;
    note(say["agent.calling"]);
    post("/agent/preview", {account_id: String(offered)}).then(({ok, answer}) => {
      if (ok) return;
      let message = say["agent.offer.denied"] + " " + (answer.error || "");
      if (answer.next_allowed_at) message += " · " + say["agent.law.next"] + " " + answer.next_allowed_at;
      note(message);
    });
  }

  function skipOffer() {
    if (offered === null) return;
    note("");
    post("/agent/offer/skip", {account_id: String(offered), reason: $("skip-reason").value}).then(({ok, answer}) => {
      if (!ok) note(answer.error || "");
    });
  }

  function showPop(pop, visible) {
    clearCall();
    note("");
    attempt = pop.attempt_id;
    $("waiting").hidden = true;
    $("call").hidden = false;
    $("wrap").hidden = false;
    $("debtor").textContent = visible ? (pop.debtor || say["agent.no_account"]) : "";
    $("phone").textContent = visible ? pop.phone : "";
    if (!visible) {
      $("call-note").textContent = say["agent.not_visible"];
      $("call-note").hidden = false;
      $("before-confirm").hidden = true;
      return;
    }
    desk.dataset.popAttempt = String(attempt);
    fetch("/agent/calls/" + attempt + "/codes", {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((response) => (response.ok ? response.json() : []))
      .then((codes) => {
        codes.forEach((code, index) => {
          const option = text("option", (index < 9 ? index + 1 + " · " : "") + code.label);
          option.value = code.code;
          // a code that says the agent spoke with the debtor (a promise...) once the right party is confirmed
          option.dataset.rightParty = code.flags.includes("right_party") ? "1" : "";
          option.disabled = option.dataset.rightParty === "1" && $("details").hidden;
          $("code").append(option);
        });
      });
  }

  function showDetails(details) {
    $("before-confirm").hidden = true;
    $("details").hidden = false;
    $("promise-fields").hidden = false;
    for (const option of $("code").options) option.disabled = false;
    $("mini-miranda").hidden = !details.mini_miranda;
    $("script").textContent = details.script || say["agent.script.text"];
    for (const account of details.accounts) {
      const row = document.createElement("tr");
      row.append(text("td", account.ref), text("td", account.portfolio));
      const balance = text("td", account.balance + " " + account.currency);
      balance.className = "num";
      const overdue = text("td", account.days_past_due === null ? "" : String(account.days_past_due));
      overdue.className = "num";
      row.append(balance, overdue);
      $("accounts").append(row);
    }
    for (const law of details.law) {
      let line = say["agent.channel." + law.channel] + ": ";
      line += law.allowed ? say["agent.law.allowed"] : say["agent.law.denied"] + " (" +
        law.reasons.map((reason) => say["reason." + reason] || reason).join(", ") + ")";
      if (!law.allowed && law.next_allowed_at) line += " · " + say["agent.law.next"] + " " + law.next_allowed_at;
      $("law").append(text("li", line));
    }
    for (const promise of details.promises) {
      $("promises").append(text("li", [promise.account_ref, promise.state, promise.total, promise.currency].join(" · ")));
    }
    for (const entry of details.timeline) {
      const parts = [entry.at.slice(0, 16).replace("T", " "), entry.account, entry.kind, entry.outcome || "",
        entry.amount || "", entry.agent || ""];
      $("timeline").append(text("li", parts.filter(Boolean).join(" · ")));
    }
  }

  function confirmParty() {
    if (attempt === null || !$("details").hidden) return;
    post("/agent/calls/" + attempt + "/right-party", {}).then(({ok, answer}) => {
      if (ok) showDetails(answer);
    });
  }

  function setState(state) {
    post("/agent/state", {state, reason: $("pause-reason").value}).then(({ok, answer}) => {
      if (ok) showState(answer);
      else refuse(answer);
    });
  }

  function refuse(answer) {
    $("refused").textContent = answer.error || String(answer);
    $("refused").hidden = false;
  }

  $("search").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const query = new URLSearchParams({q: $("search-ref").value.trim()});
    fetch("/agent/accounts?" + query, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((response) => response.json().then((answer) => ({ok: response.ok, answer})))
      .then(({ok, answer}) => {
        $("found").replaceChildren();
        if (!ok) return refuse(answer);
        for (const account of answer) {
          const button = text("button", say["agent.call"]);
          button.type = "button";
          button.dataset.account = String(account.id);
          button.addEventListener("click", () => preview(account.id));
          const line = text("li", [account.ref, account.portfolio, account.debtor].join(" · ") + " ");
          line.append(button);
          $("found").append(line);
        }
      });
  });

  function preview(accountId) {
    $("link").textContent = say["agent.calling"];
    post("/agent/preview", {account_id: String(accountId)}).then(({ok, answer}) => {
      if (!ok) {
        $("link").textContent = answer.error || "";
      }
    });
  }

  $("offer-call").addEventListener("click", callOffer);
  $("offer-skip").addEventListener("click", skipOffer);
  $("ready").addEventListener("click", () => setState("ready"));
  $("pause").addEventListener("click", () => setState("paused"));
  $("confirm").addEventListener("click", confirmParty);
  $("disposition").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    if (attempt === null) return;
    const fields = Object.fromEntries(new FormData($("disposition")).entries());
    post("/agent/calls/" + attempt + "/disposition", fields).then(({ok, answer}) => {
      if (ok) {
        clearCall();
        $("link").textContent = say["agent.saved"];
        if (answer.state) showState({state: answer.state, pause_reason: null, attempt_id: null, dialer_down: answer.dialer_down});
      } else refuse(answer);
    });
  });

  document.addEventListener("keydown", (key) => {
    if (key.key === "Enter" && (key.ctrlKey || key.metaKey)) {
      key.preventDefault();
      $("disposition").requestSubmit();
      return;
    }
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (typing || key.ctrlKey || key.altKey || key.metaKey) return;
    if (key.key === "/") {
      key.preventDefault();
      $("search-ref").focus();
    } else if (key.key === "l") callOffer();
    else if (key.key === "s") skipOffer();
    else if (key.key === "r") setState("ready");
    else if (key.key === "p") setState("paused");
    else if (key.key === "c") confirmParty();
    else if (/^[1-9]$/.test(key.key) && $("code").options.length >= Number(key.key)) {
      if (!$("code").options[Number(key.key) - 1].disabled) $("code").selectedIndex = Number(key.key) - 1;
    }
  });

  const events = new EventSource("/agent/events");
  events.addEventListener("open", () => { $("link").textContent = ""; });
  events.addEventListener("error", () => { $("link").textContent = say["agent.reconnecting"]; });
  events.addEventListener("agent_state", (message) => showState(JSON.parse(message.data)));
  events.addEventListener("screen_pop", (message) => showPop(JSON.parse(message.data), true));
  events.addEventListener("call_not_visible", (message) => showPop(JSON.parse(message.data), false));
  events.addEventListener("preview_offer", (message) => showOffer(JSON.parse(message.data)));
  events.addEventListener("preview_cleared", (message) => clearOffer(JSON.parse(message.data)));
  // the node no longer keeps some events this page missed: start again from its state now
  events.addEventListener("reset", () => window.location.reload());
  events.addEventListener("call_pending", () => note(say["agent.pending"])); // it pops once this call is saved
  events.addEventListener("call_ended", (message) => {
    if (JSON.parse(message.data).attempt_id !== attempt) return;
    $("call-note").textContent = say["agent.ended"];
    $("call-note").hidden = false;
  });
})();
