"""The ``Range`` header of a recording under attack (round 18 M1, L1, L3): a header built to make a backtracking
parser try every split answers at once, only the range read is audited, and ``HEAD`` answers as ``GET`` without
a body."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartera.web.media import MAX_RANGE_ELEMENTS, MAX_RANGE_HEADER, BadRange, ByteRange, parse_range
from tests.test_web_abuse import served
from tests.test_web_pages import Site, sign_in
from tests.test_web_pages import site as pages_site

site = pages_site  # the pages' fixture: site t, seeded

pytestmark = pytest.mark.abuse

#: the red team's header (59 bytes: ~7 s of a frozen node with a backtracking range-set regex), then longer ones
REDTEAM = "bytes=" + " ," * 26 + "x"
LONGER = ["bytes=" + " ," * n + "x" for n in (40, 400, 4000)] + ["bytes=" + " \t," * 3000 + "0-1 x"]
GENEROUS_S = 2.0  #: the point is "returns, not exponential": a linear parse of 16 KB takes milliseconds


def old_parse_range(header: str, size: int) -> ByteRange | None:
    """The range-set regex parser this replaced, the oracle for short headers (where its backtracking is cheap):
    which headers are ranges, and which element is the one range (what a single range means did not change)."""
    specifier = re.fullmatch(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)=(.*)", header.strip(" \t"), re.DOTALL)
    spec = r"(?:[0-9]+-[0-9]*|-[0-9]+)"
    if specifier is None or specifier[1].lower() != "bytes":
        return None
    if not re.fullmatch(rf"(?:{spec})?(?:[ \t]*,[ \t]*(?:{spec})?)*", specifier[2]):
        return None
    wanted = [m for e in specifier[2].split(",") if (m := re.fullmatch(r"([0-9]*)-([0-9]*)", e.strip(" \t")))]
    if not wanted:
        return None
    if len(wanted) > 1:
        raise BadRange(header)
    return parse_range(f"bytes={wanted[0][0]}", size)


def outcome(parse: object, header: str, size: int) -> object:
    try:
        return parse(header, size)  # type: ignore[operator]
    except BadRange:
        return "416"


def test_a_header_built_to_backtrack_is_parsed_at_once() -> None:
    """In a child process, so that a parser gone exponential fails the test (timeout) instead of hanging it."""
    code = (
        "import json, sys, time\n"
        "from cartera.web.media import parse_range\n"
        "took = []\n"
        "for header in json.loads(sys.stdin.read()):\n"
        "    start = time.perf_counter(); parse_range(header, 1000); took.append(time.perf_counter() - start)\n"
        "print(json.dumps(took))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        input=json.dumps([REDTEAM, *LONGER]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert max(json.loads(done.stdout)) < GENEROUS_S


def test_the_red_teams_header_answers_at_once_and_is_ignored(site: Site) -> None:
    client = sign_in(site.client(), "ana")
    rid = site.seeded.recordings["BCO-1"]
    whole = client.get(f"/recordings/{rid}/audio").content
    for path in ("audio", "download"):
        for header in (REDTEAM, *LONGER):
            start = time.perf_counter()
            answer = client.get(f"/recordings/{rid}/{path}", headers={"Range": header})
            assert time.perf_counter() - start < GENEROUS_S, (path, len(header))
            assert (answer.status_code, answer.content) == (200, whole), (path, len(header))
            assert "content-range" not in answer.headers


def test_ranges_keep_their_meaning_and_abusive_ones_are_ignored() -> None:
    assert parse_range("bytes=0-1" + " ," * 40, 100) == ByteRange(0, 1)
    assert parse_range("bytes=" + "," * (MAX_RANGE_ELEMENTS - 1) + "0-1", 100) == ByteRange(0, 1)
    assert parse_range("bytes=" + "," * MAX_RANGE_ELEMENTS + "0-1", 100) is None  # too many elements: ignored
    assert parse_range("bytes=" + "0" * (MAX_RANGE_HEADER - 8) + "5-", 100) == ByteRange(5, 99)
    assert parse_range("bytes=" + "0" * (MAX_RANGE_HEADER - 7) + "5-", 100) is None  # too long: ignored
    for header in ("bytes= 0-1", "bytes=0-1 x", "bytes=0 -1", "bytes=0- 1", "bytes=-", "bytes=1-2-3", "bytes=0-1\n"):
        assert parse_range(header, 100) is None, header
    with pytest.raises(BadRange):
        parse_range("bytes=0-1, ,2-3", 100)


RANGE_TEXT = st.text(alphabet=" \t,-=0123456789bytesBYTx;\n\u0665", max_size=40)


@settings(max_examples=3000, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.one_of(RANGE_TEXT, RANGE_TEXT.map(lambda text: "bytes=" + text)),
    size=st.integers(min_value=0, max_value=200),
)
def test_parse_range_means_what_the_regex_meant_on_short_headers(header: str, size: int) -> None:
    """Short headers (at most a dozen commas, where the old regex's backtracking is cheap): the same answer."""
    if header.count(",") > 12:
        return
    assert outcome(parse_range, header, size) == outcome(old_parse_range, header, size)


@settings(max_examples=300, deadline=1000)
@given(unit=st.sampled_from(["bytes", "BYTES", "pages", ""]), parts=st.lists(RANGE_TEXT, max_size=400))
def test_parse_range_of_long_headers_is_quick_and_total(unit: str, parts: list[str]) -> None:
    """Any header: a range within the file, ``None`` or :class:`BadRange`, each within hypothesis' deadline."""
    header = f"{unit}={','.join(parts)}"
    result = outcome(parse_range, header, 100)
    assert result in (None, "416") or (isinstance(result, ByteRange) and 0 <= result.start <= result.end < 100)


def test_no_range_header_makes_a_recording_answer_5xx(site: Site) -> None:
    client = sign_in(site.client(), "ana")  # once: hypothesis runs the examples within one test
    rid = site.seeded.recordings["BCO-1"]

    @settings(max_examples=60, deadline=None)
    @given(header=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300))
    def answered(header: str) -> None:
        answer = client.get(f"/recordings/{rid}/audio", headers={b"Range": header.strip().encode("latin-1")})
        assert answer.status_code in (200, 206, 416), (header, answer.status_code)

    answered()


def test_the_audit_row_keeps_the_range_read_not_the_header(site: Site) -> None:
    """Round 18 L1: a header of thousands of empty elements made each play's audit row as long."""
    client = sign_in(site.client(), "ana")
    rid = site.seeded.recordings["BCO-1"]
    size = len(client.get(f"/recordings/{rid}/audio").content)
    for header in ("bytes=0-1" + "," * 12000, "bytes=0-1" + " ," * 40, "bytes=-10", REDTEAM):
        client.get(f"/recordings/{rid}/audio", headers={"Range": header})
    ranges = [entry.details["range"] for entry in site.audits("recordings.play")]
    assert ranges == ["all", "all", "bytes=0-1", f"bytes={size - 10}-{size - 1}", "all"]
    assert max(len(json.dumps(entry.details)) for entry in site.audits("recordings.play")) < 400


def test_head_answers_as_get_without_a_body(site: Site) -> None:
    """Round 18 L3: HEAD answered 405 everywhere. A recording's HEAD tells its size (audited as its GET is)."""
    client = sign_in(site.client(), "ana")
    rid = site.seeded.recordings["BCO-1"]
    data = client.get(f"/recordings/{rid}/audio").content
    plays = len(site.audits("recordings.play"))
    head = client.head(f"/recordings/{rid}/audio")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(data)))
    assert head.headers["content-security-policy"] == "sandbox"
    part = client.head(f"/recordings/{rid}/download", headers={"Range": "bytes=0-9"})
    assert (part.status_code, part.content, part.headers["content-range"]) == (206, b"", f"bytes 0-9/{len(data)}")
    assert len(site.audits("recordings.play")) == plays + 1
    assert len(site.audits("recordings.download")) == 1
    for path in ("/recordings", f"/recordings/{rid}", "/login", "/healthz"):
        page, get = client.head(path), client.get(path)
        assert (page.status_code, page.content) == (get.status_code, b""), path
        assert page.headers["content-type"] == get.headers["content-type"], path
        assert page.headers["x-frame-options"] == "DENY", path
    assert client.head("/logout").status_code == 405  # a POST-only route: no GET, no HEAD


def test_head_over_the_wire_keeps_the_connection(site: Site) -> None:
    rid = site.seeded.recordings["BCO-1"]
    with served(site.node) as port:
        client = sign_in(site.client(), "ana")
        cookie = f"cartera_session={client.cookies['cartera_session']}"
        size = len(client.get(f"/recordings/{rid}/audio").content)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for method, status in (("HEAD", 200), ("GET", 206), ("HEAD", 200), ("GET", 206)):
                headers = {"Cookie": cookie} | ({"Range": "bytes=0-3"} if method == "GET" else {})
                connection.request(method, f"/recordings/{rid}/audio", headers=headers)
                answer = connection.getresponse()
                body = answer.read()
                assert answer.status == status, method
                assert len(body) == (0 if method == "HEAD" else 4), method
                if method == "HEAD":
                    assert answer.getheader("content-length") == str(size)
            for _ in range(4):  # an event stream's HEAD ends at once and gives its slot back (one per user)
                connection.request("HEAD", "/wallboard/events", headers={"Cookie": cookie})
                answer = connection.getresponse()
                assert (answer.status, answer.read()) == (200, b"")
                assert answer.getheader("content-type", "").startswith("text/event-stream")
        finally:
            connection.close()
