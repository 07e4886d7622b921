"""The inspector page in a real headless Chromium against a real ``sim run``: it connects
by itself and shows every stream, pings, unsubscribes, shows a server-side close and
reconnects, and puts faults on its fault lane (outage.toml's outage included).

Every wait is bounded (WAIT_S) and polls the page as a user would look at it; nothing
measures how fast.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets.sync.client
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import ROOT, WAIT_S, Sim

pytestmark = pytest.mark.browser

DASHBOARD = ROOT / "scenarios" / "energy-dashboard.toml"
OUTAGE = ROOT / "scenarios" / "outage.toml"
SAMPLE = ROOT / "recordings" / "energy-dashboard-sample.parquet"
STREAMS = ("system_stats", "dashboard_stats", "energy_market", "notification", "transaction")


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(condition, f"waiting for {what}")


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def received(driver: WebDriver, stream: str) -> int:
    cell = driver.find_element(By.CSS_SELECTOR, f"#stream-{stream} td:nth-child(3)")
    return int(cell.text)


def received_by_page(driver: WebDriver, stream: str, what: str = "received") -> int:
    """What the page has counted of ``stream`` so far (drawn or not yet): ``received``,
    ``gaps``, ``dups`` or ``missed``."""
    count: int = driver.execute_script(
        "return page.streams.get(arguments[0])[arguments[1]]", stream, what
    )
    return count


def open_page(driver: WebDriver, sim: Sim) -> None:
    driver.get(sim.page)
    wait(driver, lambda d: text(d, "state") == "connected", "the page to connect")


def log_streams(driver: WebDriver) -> set[str]:
    """The streams of the log lines in view (read in the page in one go: they move on)."""
    return set(
        driver.execute_script(
            "return [...document.querySelectorAll('#log li:not([hidden])')]"
            ".map((li) => li.dataset.stream)"
        )
    )


def set_log_filter(driver: WebDriver, needle: str) -> None:
    box = driver.find_element(By.ID, "log-filter")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if needle:
        box.send_keys(needle)


def wait_for_log_line(driver: WebDriver, needle: str, what: str) -> None:
    """Until the log, filtered by the text ``needle``, shows a line; then unfiltered."""
    set_log_filter(driver, needle)
    wait(driver, log_streams, what)
    set_log_filter(driver, "")


# The log line at the top of the log's view (the rows are positioned by the page).
TOP_LINE_JS = """
const log = document.getElementById("log");
const y = Math.floor(log.scrollTop / 18) * 18 + "px";
const row = [...log.querySelectorAll("li:not([hidden])")].find((li) => li.style.top === y);
return row ? row.innerText : null;
"""


def test_the_page_connects_and_shows_messages_of_every_stream(
    browser: WebDriver, sim_run: Callable[..., Sim], screenshot: Callable[[str], Any]
) -> None:
    sim = sim_run(DASHBOARD, "--speed", "20")
    open_page(browser, sim)
    wait(browser, lambda d: all(received(d, s) > 0 for s in STREAMS), "a message of every stream")
    # Everything the page loaded came from the server itself: no CDN, works offline.
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {sim.page.rstrip("/")}
    screenshot("connected")
    # The log has lines of every stream: filtered by each, its lines are in view.
    streams = Select(browser.find_element(By.ID, "log-stream"))
    for stream in STREAMS:
        streams.select_by_value(stream)
        wait(browser, lambda d, s=stream: log_streams(d) == {s}, f"{stream} lines alone in the log")
    # A click on a log line shows its JSON pretty-printed (every line in view is a
    # system_stats one: the lines move on as messages come).
    streams.select_by_value("system_stats")
    wait(browser, lambda d: log_streams(d) == {"system_stats"}, "system_stats lines alone")
    browser.find_element(By.CSS_SELECTOR, "#log li:not([hidden])").click()
    detail = text(browser, "log-detail")
    assert detail.startswith("{\n") and '"type": "system_stats"' in detail


def test_ping_shows_a_round_trip_time(browser: WebDriver, sim_run: Callable[..., Sim]) -> None:
    sim = sim_run(DASHBOARD)
    open_page(browser, sim)
    assert text(browser, "rtt") == "–"
    browser.find_element(By.ID, "ping").click()
    rtt = wait(browser, lambda d: re.fullmatch(r"\d+\.\d ms", text(d, "rtt")), "a round trip")
    assert float(rtt.group(0).split()[0]) >= 0


def test_unsubscribing_a_stream_stops_its_messages(
    browser: WebDriver, sim_run: Callable[..., Sim]
) -> None:
    sim = sim_run(DASHBOARD, "--speed", "20")
    open_page(browser, sim)
    wait(browser, lambda d: received(d, "system_stats") > 0, "a system_stats message")
    browser.find_element(By.ID, "sub-system_stats").click()
    # The pong of a ping sent after the unsubscribe is a fence: whatever system_stats
    # message was already on its way arrived before it.
    browser.find_element(By.ID, "ping").click()
    wait_for_log_line(browser, '"type":"unsubscribed"', "the unsubscribe's answer")
    wait_for_log_line(browser, '"type":"pong"', "the fence's pong")
    # Counted as the page received them (the table shows the counts at its next draw,
    # which may come after the pong's line: a message in the same batch as the
    # unsubscribe's answer would then look like one that came after it).
    stopped_at = received_by_page(browser, "system_stats")
    market = received(browser, "energy_market")
    # energy_market comes every 7 s and system_stats every 5 s of scenario time: three
    # more market messages span several system_stats periods.
    wait(browser, lambda d: received(d, "energy_market") >= market + 3, "more energy_market")
    assert received_by_page(browser, "system_stats") == stopped_at
    browser.find_element(By.ID, "sub-system_stats").click()  # and back
    wait(browser, lambda d: received(d, "system_stats") > stopped_at + 1, "system_stats again")
    # What was sent while unsubscribed is no gap.
    assert received_by_page(browser, "system_stats", "gaps") == 0


def test_a_server_side_disconnect_shows_the_close_and_the_page_reconnects(
    browser: WebDriver, sim_run: Callable[..., Sim], screenshot: Callable[[str], Any]
) -> None:
    sim = sim_run(DASHBOARD, "--speed", "20")
    open_page(browser, sim)
    browser.find_element(By.ID, "disconnect-all").click()  # POST /control/disconnect
    wait(browser, lambda d: "closed 1012" in text(d, "close-info"), "the close to show")
    wait(browser, lambda d: text(d, "reconnects") == "1", "a reconnect")
    wait(browser, lambda d: text(d, "state") == "connected", "the page to connect again")
    marks = wait(
        browser,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, '#fault-lane .fault-mark[data-kind="disconnect"]'
        ),
        "the disconnect on the fault lane",
    )
    assert len(marks) == 1
    wait(browser, lambda d: "1012" in text(d, "connections"), "the close code in the table")
    screenshot("reconnected")


def test_outage_shows_on_the_fault_lane_and_the_page_reconnects_by_itself(
    browser: WebDriver, sim_run: Callable[..., Sim], screenshot: Callable[[str], Any]
) -> None:
    # outage.toml: at 30 s every connection is dropped and handshakes are refused for
    # 20 s; at speed 10 that is 3 s after start, for 2 s.
    sim = sim_run(OUTAGE, "--speed", "10")
    open_page(browser, sim)
    wait(browser, lambda d: "closed 1006" in text(d, "close-info"), "the outage's drop")
    # The panel is redrawn four times a second: elements are looked at in one query.
    wait(
        browser,
        lambda d: d.find_elements(
            By.CSS_SELECTOR,
            '#fault-lane .fault-mark.span[data-kind="outage"][title*="server-down"]',
        ),
        "the outage (fault server-down) as a span on the fault lane",
    )
    wait(
        browser,
        lambda d: text(d, "state") == "connected" and int(text(d, "reconnects")) >= 1,
        "the page to reconnect after the outage",
    )
    # The broadcast went on during the 20 s outage (system_stats every 5 s): what the
    # page skipped is counted as missed while away, not as gaps.
    wait(
        browser,
        lambda d: received_by_page(d, "system_stats", "missed") >= 3,
        "the messages missed during the outage",
    )
    assert received_by_page(browser, "system_stats", "gaps") == 0
    screenshot("outage")


def test_a_restarted_server_starting_seq_over_is_no_duplicate(
    browser: WebDriver, sim_run: Callable[..., Sim]
) -> None:
    """The page reconnects to a new `sim run` on the same port (the edit-and-restart
    loop): its broadcast's seq starts over, which is neither duplicates nor gaps."""
    first = sim_run(DASHBOARD, "--speed", "20")
    open_page(browser, first)
    wait(browser, lambda d: received_by_page(d, "system_stats") >= 3, "system_stats messages")
    first.process.kill()
    first.process.wait()
    port = int(first.url.rsplit(":", 1)[1])
    sim_run(DASHBOARD, "--speed", "20", port=port)
    before = received_by_page(browser, "system_stats")
    wait(
        browser,
        lambda d: received_by_page(d, "system_stats") >= before + 3,
        "system_stats from the restarted server",
    )
    counts = [received_by_page(browser, "system_stats", what) for what in ("dups", "gaps")]
    assert counts == [0, 0]


def open_page_off_the_feed(driver: WebDriver, sim: Sim) -> str:
    """Load the page and wait until it has decided whether to connect to the feed (its
    state then says so); return that state."""
    driver.get(sim.page)
    state: str = wait(
        driver,
        lambda d: (t := text(d, "state")) in ("not connected", "connected") and t,
        "the page to start",
    )
    return state


def replay_status(sim: Sim) -> dict[str, Any]:
    with urllib.request.urlopen(sim.page + "status", timeout=WAIT_S) as answer:
        status: dict[str, Any] = json.load(answer)
    return status


def test_opening_the_page_during_a_replay_takes_no_recorded_connection(
    browser: WebDriver, sim_run: Callable[..., Sim]
) -> None:
    sim = sim_run(SAMPLE, "--free-run", command="replay")
    open_page_off_the_feed(browser, sim)
    with websockets.sync.client.connect(sim.url, open_timeout=WAIT_S, proxy=None):
        # The client under test is the replay's only client, and replays recorded
        # connection 0: as a client of the feed the page would have taken 0, and the
        # client 1 (in the sample, the reconnect that was refused).
        status = replay_status(sim)
        assert status["connections_total"] == 1
        assert [(p["conn"], p["recorded_conn"]) for p in status["replay"]] == [(0, 0)]
    assert text(browser, "state") == "not connected"


def test_a_replay_shows_each_clients_position_in_its_recording(
    browser: WebDriver, sim_run: Callable[..., Sim], screenshot: Callable[[str], Any]
) -> None:
    sim = sim_run(SAMPLE, "--free-run", "--loop", command="replay")
    open_page_off_the_feed(browser, sim)
    # Asked to, the page is a client like any other: it replays recorded connection 0.
    browser.find_element(By.ID, "connect").click()
    wait(browser, lambda d: text(d, "state") == "connected", "the page to connect")
    # Read in the page in one go (the panel is redrawn four times a second).
    fraction = wait(
        browser,
        lambda d: d.execute_script(
            "const m = document.querySelector('#replay-0 .position');"
            " return m && m.dataset.fraction;"
        ),
        "the replay position marker",
    )
    assert 0 <= float(fraction) <= 1
    assert browser.find_elements(By.CSS_SELECTOR, "#replay-0 .push")  # the recorded pushes
    assert not browser.find_element(By.ID, "control").is_displayed()  # sim run's only
    screenshot("replay")


# One stream at 1,000 msg/s (every 1 ms), as issue #11's speed target says.
FAST_FEED = """
[scenario]
name = "fast"
seed = 3

[[stream]]
name = "tick"
every = "1ms"
[stream.fields]
n = { dist = "counter" }
pad = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
"""

# Counts, in the page, the log draws per animation frame (every requestAnimationFrame
# callback of one frame sees the same document.timeline.currentTime) and the most log
# lines a draw left in the DOM; keeps the nodes drawn now, to see later that they were
# reused rather than made again.
COUNT_DRAWS_JS = """
const log = document.getElementById("log");
const probe = window.__draws = {perFrame: new Map(), draws: 0, maxPerFrame: 0, maxRows: 0,
  inView: Math.ceil(log.clientHeight / 18) + 1};
const inner = window.renderLog;
window.renderLog = function (rebuild) {
  const frame = document.timeline.currentTime;
  const n = (probe.perFrame.get(frame) || 0) + 1;
  probe.perFrame.set(frame, n);
  probe.draws += 1;
  probe.maxPerFrame = Math.max(probe.maxPerFrame, n);
  inner(rebuild);
  probe.maxRows = Math.max(probe.maxRows, log.querySelectorAll("li:not([hidden])").length);
};
window.__nodes = [...document.querySelectorAll(
  "#log li, #stream-tick svg.spark, #counters .counter, #connections tbody tr")];
window.framesSent = () => [...document.querySelectorAll("#counters .counter")]
  .find((c) => c.lastChild.textContent === "frames sent").firstChild.textContent;
window.__sent = window.framesSent();
"""


def test_at_1000_messages_a_second_the_log_draws_one_bounded_batch_per_frame_at_most(
    browser: WebDriver,
    sim_run: Callable[..., Sim],
    tmp_path: Path,
    screenshot: Callable[[str], Any],
) -> None:
    feed = tmp_path / "fast.toml"
    feed.write_text(FAST_FEED)
    sim = sim_run(feed)
    open_page(browser, sim)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#connections tbody tr"), "a row")
    browser.execute_script(COUNT_DRAWS_JS)
    start = received(browser, "tick")
    # Until 3,000 more messages have come (3 s of the feed): they outnumber many times
    # over what the log keeps and what it shows.
    wait(browser, lambda d: received(d, "tick") >= start + 3000, "3,000 messages")
    probe = browser.execute_script(
        "return {...window.__draws, perFrame: undefined,"
        " kept: page.log.length, pending: page.pending.length,"
        " reused: window.__nodes.every((node) => node.isConnected), nodes: window.__nodes.length,"
        " sentMoved: window.framesSent() !== window.__sent}"
    )
    assert probe["draws"] > 0
    assert probe["maxPerFrame"] == 1  # never two batches in one frame
    # Far fewer draws than messages: whatever arrived between two draws went in as one.
    assert probe["draws"] * 10 < 3000
    # Only the lines in view are in the DOM, however many are kept.
    assert 0 < probe["maxRows"] <= probe["inView"] < 100
    assert probe["kept"] <= 2000 and probe["pending"] <= 4000  # LOG_CAP, and twice it
    # The log's rows, the sparkline, the counters and the connection's row were redrawn
    # in place, not made again (the counters did move).
    assert probe["reused"] and probe["nodes"] > 10 and probe["sentMoved"]
    # The page answers a click while the feed runs: Pause stops the log's lines (the
    # counts go on), Resume brings them back.
    browser.find_element(By.ID, "pause").click()
    wait(browser, lambda d: text(d, "pause") == "Resume", "the log to pause")
    first_line = browser.execute_script(TOP_LINE_JS)
    paused_at = received(browser, "tick")
    wait(browser, lambda d: received(d, "tick") >= paused_at + 500, "500 more messages")
    assert browser.execute_script(TOP_LINE_JS) == first_line
    # Paused, the log scrolls down to the oldest line it keeps (2,000 lines, with only
    # those in view in the DOM).
    oldest = browser.execute_script(
        "const log = document.getElementById('log'); log.scrollTop = log.scrollHeight;"
        " return page.view[0].text"
    )
    wait(browser, lambda d: (d.execute_script(TOP_LINE_JS) or "").find("tick") >= 0, "a line")
    bottom = browser.execute_script(
        "const rows = [...document.querySelectorAll('#log li:not([hidden])')];"
        " rows.sort((a, b) => parseFloat(b.style.top) - parseFloat(a.style.top));"
        " return rows[0].innerText"
    )
    assert oldest[:60] in bottom
    browser.find_element(By.ID, "pause").click()
    wait(
        browser,
        lambda d: d.execute_script(TOP_LINE_JS) not in (None, first_line),
        "new lines after Resume",
    )
    screenshot("fast-feed")


def test_a_scrolled_log_keeps_its_lines_in_view_as_new_ones_come(
    browser: WebDriver, sim_run: Callable[..., Sim]
) -> None:
    sim = sim_run(DASHBOARD, "--speed", "20")
    open_page(browser, sim)
    wait(browser, lambda d: int(text(d, "log-count")) >= 40, "40 lines in the log")
    browser.execute_script("document.getElementById('log').scrollTop = 5 * 18")
    wait(browser, lambda d: d.execute_script(TOP_LINE_JS), "the log to scroll")
    in_view = browser.execute_script(TOP_LINE_JS)
    kept = int(text(browser, "log-count"))
    wait(browser, lambda d: int(text(d, "log-count")) >= kept + 3, "3 more lines")
    assert browser.execute_script(TOP_LINE_JS) == in_view
    # Back at the top, the newest line is in view.
    browser.execute_script("document.getElementById('log').scrollTop = 0")
    wait(
        browser,
        lambda d: (d.execute_script(TOP_LINE_JS) or "").endswith(
            d.execute_script("return page.view[page.view.length - 1].text.slice(-40)")
        ),
        "the newest line at the top",
    )
