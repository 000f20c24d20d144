"""`hero-tui report`: the HTML file opened in headless Chromium, the tuned-against-base samples, the plots, one-line errors.

The session is real (tiny model, two rounds learned, an open round with labels given and undone: report_support).
Chromium is Debian's package (.ci/run installs it); without it the browser tests skip and say so.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from report_support import db_rows, invoke, labeled_session

pytest.importorskip("matplotlib", reason='the report needs the report extra: pip install -e ".[report]"')

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
LABEL_NAMES = {"good": "good", "bad": "not good", None: "unlabeled"}
# Chromium resolves no host name and sends every request to a closed port: the page must open with no network.
NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    return labeled_session(tmp_path_factory.mktemp("report") / "session")


@pytest.fixture(scope="module")
def report(session, tmp_path_factory) -> Path:
    """The report with two tuned-against-base pairs drawn by the engine."""
    path = tmp_path_factory.mktemp("out") / "report.html"
    result = invoke("report", session, "--out", path, "--samples", "2")
    assert result.exit_code == 0, result.output
    assert f"wrote the report to {path}" in result.stdout
    return path


def chromium(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home)}
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *NO_NETWORK, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=True)


class Figures(html.parser.HTMLParser):
    """The rendered page's figures (class and data- attributes), the text of their label spans, and every source it names."""

    def __init__(self):
        super().__init__()
        self.figures: list[dict[str, str]] = []
        self.sources: list[str] = []
        self.tags: set[str] = set()
        self._in_label = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "figure":
            self.figures.append({**attrs, "label_text": ""})
        self.sources += [attrs[name] for name in ("src", "href") if attrs.get(name)]
        self._in_label = tag == "span" and attrs.get("class") == "label"

    def handle_data(self, data):
        if self._in_label:
            self.figures[-1]["label_text"] += data

    def handle_endtag(self, tag):
        self._in_label = False

    def of_class(self, name: str) -> list[dict[str, str]]:
        return [f for f in self.figures if name in f.get("class", "").split()]


def rendered(report: Path, home: Path) -> Figures:
    parser = Figures()
    parser.feed(chromium("--dump-dom", report.as_uri(), home=home).stdout)
    return parser


@needs_chromium
def test_the_page_chromium_draws_shows_every_image_with_its_label_and_best(session, report, tmp_path):
    """Guards the report's promise, read from the page as Chromium built it: one figure per image in hero.db, in round
    and batch order, each with hero.db's label, the round's best marked, and nothing loaded from outside the file."""
    page = rendered(report, tmp_path)
    stored = db_rows(session, "SELECT id, round, idx, label FROM images ORDER BY round, idx")
    shown = page.of_class("round-image")
    assert len(shown) == len(stored) == 18
    assert [(int(f["data-image-id"]), int(f["data-round"]), int(f["data-idx"])) for f in shown] == [s[:3] for s in stored]
    assert [f["label_text"] for f in shown] == [LABEL_NAMES[s[3]] for s in stored]
    assert [f["data-label"] for f in shown] == [LABEL_NAMES[s[3]] for s in stored]
    bests = [best for (best,) in db_rows(session, "SELECT best_image_id FROM rounds WHERE best_image_id IS NOT NULL ORDER BY round")]
    assert {int(f["data-image-id"]) for f in shown if "best" in f["class"].split()} == set(bests)
    assert [int(f["data-image-id"]) for f in page.of_class("best-of-round")] == bests  # a best kept from a round shows again
    assert len(page.of_class("tuned")) == len(page.of_class("base")) == 2
    assert len(page.of_class("plot")) == 8
    assert all(source.startswith("data:image/") for source in page.sources), [s[:40] for s in page.sources if not s.startswith("data:")]
    assert not {"script", "link", "iframe"} & page.tags


BEST_BORDER = (0xE5, 0xA0, 0x00)  # html_report.STYLE: the round's best has this border and shadow around its image
FRAME = 2 + 3 + 3  # shadow, border and padding between the best's outer edge and its image


@needs_chromium
def test_the_screenshot_with_no_network_shows_the_images_not_a_blank_page(report, tmp_path):
    """Guards that the page draws, and its images with it (their data: URIs decode and the Content Security Policy lets
    them in), with no network: the first round's best, found by its border, shows the tiny model's many colours."""
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,4200", report.as_uri(), home=tmp_path)
    with Image.open(shot) as image:
        page = image.convert("RGB")
    assert ImageStat.Stat(page).stddev[0] > 20, "the page is blank"
    border = [(x, y) for y in range(page.height) for x in range(0, page.width, 2) if page.getpixel((x, y)) == BEST_BORDER]
    assert border, "no best image is marked on the page"
    top = min(y for _, y in border)
    left = min(x for x, y in border if y == top)
    inside = page.crop((left + FRAME + 4, top + FRAME + 4, left + FRAME + 150, top + FRAME + 150))
    colours = inside.getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 1000, f"the best image shows {len(colours or [])} colours: not drawn"


def test_base_samples_are_the_base_models_and_tuned_ones_differ(session, tmp_path):
    """Guards the comparison: the base model's images equal a fresh session's (no LoRA learned) from the same noise,
    and the tuned LoRA's differ from them."""
    from hero_engine.drivers import headless
    from hero_engine.reporting import html_report
    from hero_engine.session.hero_session import HeroSession
    from hero_engine.storage.store import SessionStore

    _, config = SessionStore.read_header(session)
    with HeroSession.open(session) as hero:
        comparison = headless.draw_comparison(hero, 2, seed=5)
    assert comparison.lora_round == 1 and comparison.seed == 5
    with HeroSession.create(tmp_path / "fresh", config) as fresh:
        untrained = [html_report.png_bytes(image) for image in fresh.sample(None, 2, seed=5)]
    assert list(comparison.base) == untrained
    assert all(tuned != base for tuned, base in zip(comparison.tuned, comparison.base))


def test_report_without_samples_loads_no_torch(session, tmp_path):
    """Guards that `report --no-samples` (and so the app's report key) stays on the torch-free side."""
    path = tmp_path / "plain.html"
    code = ("import sys; from hero_tui.cli import app; "
            "app([*sys.argv[1:]], standalone_mode=False); "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code, "report", str(session), "--no-samples", "--out", str(path)],
                          capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout + done.stderr
    page = Figures()
    page.feed(path.read_text(encoding="utf-8"))
    assert len(page.of_class("round-image")) == 18 and not page.of_class("tuned")
    assert "--no-samples" in path.read_text(encoding="utf-8")


def test_without_a_folder_the_report_is_of_the_session_used_last(session, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    folder = tmp_path / "hero" / "sessions" / "the-one"
    shutil.copytree(session, folder)
    result = invoke("report", "--no-samples")
    assert result.exit_code == 0, result.output
    [written] = (folder / "exports").glob("report-*.html")
    assert f"wrote the report to {written}" in result.stdout


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_a_folder_that_is_not_a_session(tmp_path):
    assert_one_line_error(invoke("report", tmp_path, "--no-samples"), "is not a hero session")


def test_a_session_with_no_rounds_yet(tmp_path):
    from hero_engine.config import HeroConfig
    from hero_engine.storage.store import SessionStore

    SessionStore.create(tmp_path / "empty", HeroConfig(prompt="a red hand", model="tiny")).close()
    assert_one_line_error(invoke("report", tmp_path / "empty", "--no-samples"), "has no rounds yet")


def test_an_unwritable_report_path_is_refused_before_any_work(session, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_one_line_error(invoke("report", session, "--out", blocker / "report.html"), "cannot write the report")


def test_a_session_open_elsewhere_gets_its_report_without_samples(session, tmp_path):
    """Guards the report of a session the app holds: drawing samples is refused in one line that names --no-samples,
    which writes the report meanwhile (read-only, no lock needed)."""
    from hero_engine.storage.lock import SessionLock

    lock = SessionLock(session)
    lock.acquire()
    try:
        assert_one_line_error(invoke("report", session, "--out", tmp_path / "r.html"), "add --no-samples")
        assert not (tmp_path / "r.html").exists()
        result = invoke("report", session, "--no-samples", "--out", tmp_path / "r.html")
        assert result.exit_code == 0, result.output
    finally:
        lock.release()
    assert (tmp_path / "r.html").is_file()


def test_without_the_report_extra_the_line_names_the_install(session, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = invoke("report", session, "--no-samples", "--out", tmp_path / "r.html")
    assert_one_line_error(result, 'pip install "hero[report]"')
    assert not (tmp_path / "r.html").exists()


def test_the_metrics_screen_asks_the_engine_for_the_report_and_shows_its_path(tmp_path):
    """Guards the app's way to the report: `w` on the metrics screen sends the engine `report` (the fake engine here,
    which writes it as the real one does, without samples, but tells its progress as if it drew them), shows how far
    the engine has drawn the report's images, and then where the report was written."""
    from textual.widgets import Static
    from tui_support import labeling, make_session, run, running_app, wait_for

    from hero_tui.screens.metrics_screen import MetricsScreen

    folder = make_session(tmp_path / "s")
    reports = lambda: sorted((folder / "exports").glob("report-*.html"))
    said: list[str] = []  # every line the screen showed under the table, however quickly the next replaced it

    async def scenario():
        async with running_app(folder, "--stage-seconds", "1", "--chunk-seconds", "0") as (app, pilot):
            await pilot.press("space", "right", "b", "s", "enter")
            await wait_for(pilot, labeling(app, 1), timeout=30)
            await pilot.press("m")
            await wait_for(pilot, lambda: isinstance(app.screen, MetricsScreen))
            shown = app.screen.query_one("#report-path", Static)
            show = shown.update
            shown.update = lambda text: (said.append(str(text)), show(text))[1]
            await pilot.press("w")
            await wait_for(pilot, lambda: "report written" in str(shown.render()))
            assert reports() and str(reports()[0]) in str(shown.render())

    run(scenario())
    drawing = [i for i, line in enumerate(said) if "drawing the report's images, tuned and base: 50%" in line]
    assert drawing and drawing[0] < len(said) - 1 and "report written" in said[-1], said  # before the path
    page = Figures()
    page.feed(reports()[0].read_text(encoding="utf-8"))
    assert len(page.of_class("round-image")) == len(db_rows(folder, "SELECT id FROM images")) == 12
    assert "The fake engine draws no samples." in reports()[0].read_text(encoding="utf-8")


def test_without_a_running_engine_the_metrics_screen_writes_the_report_itself(session, tmp_path):
    """Guards the fallback: when the engine cannot be asked, the app writes the report from the store, without samples."""
    from textual.app import App
    from textual.widgets import Static
    from tui_support import run, wait_for

    from hero_tui.screens.metrics_screen import APP_REPORT_NOTE, MetricsScreen

    folder = tmp_path / "session"
    shutil.copytree(session, folder)
    asked: list[Path] = []

    def engine_not_running(path: Path) -> bool:
        asked.append(path)
        return False

    async def scenario():
        app = App()
        async with app.run_test() as pilot:
            await app.push_screen(MetricsScreen(folder, engine_not_running))
            await pilot.press("w")
            shown = app.screen.query_one("#report-path", Static)
            await wait_for(pilot, lambda: "report written" in str(shown.render()))

    run(scenario())
    [written] = (folder / "exports").glob("report-*.html")
    assert asked == [written]
    text = written.read_text(encoding="utf-8")
    assert APP_REPORT_NOTE.split(":")[0] in text and text.count('class="round-image') == 18


def test_the_metrics_screen_says_where_else_a_report_can_go_when_its_folder_cannot_be_written(session, tmp_path):
    """Guards the app's words for a report it cannot write: the app writes to one place and has no --out, so it names
    the command that writes elsewhere instead of telling the person to choose another --out."""
    from textual.app import App
    from textual.widgets import Static
    from tui_support import run, wait_for

    from hero_tui.screens.metrics_screen import ELSEWHERE, MetricsScreen

    folder = tmp_path / "session"
    shutil.copytree(session, folder)
    shutil.rmtree(folder / "exports", ignore_errors=True)
    (folder / "exports").write_text("a file where the folder would be")
    shown_text = ""

    async def scenario():
        nonlocal shown_text
        app = App()
        async with app.run_test(size=(200, 40)) as pilot:
            await app.push_screen(MetricsScreen(folder, lambda path: False))
            await pilot.press("w")
            shown = app.screen.query_one("#report-path", Static)
            await wait_for(pilot, lambda: "report not written" in str(shown.render()))
            shown_text = str(shown.render())

    run(scenario())
    assert "exports is a file)" in shown_text and shown_text.endswith(ELSEWHERE), shown_text
    assert "choose another --out" not in shown_text


def test_the_engine_writes_the_report_with_tuned_and_base_samples(session, tmp_path):
    """Guards the protocol's `report` on the real worker: the page it writes holds the tuned-against-base pairs; while
    it draws them it tells how far it is in "report" progress (what the app's metrics screen shows); and a shutdown
    (the app quitting) stops the drawing at its next step, writing nothing."""
    import queue
    import threading

    from hero_engine import protocol

    folder = tmp_path / "session"
    shutil.copytree(session, folder)
    worker = subprocess.Popen([sys.executable, "-m", "hero_engine.worker", "--session", str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [events.put(protocol.decode(line)) for line in worker.stdout], daemon=True).start()

    seen: list[dict] = []

    def until(name: str) -> dict:
        while True:
            event = events.get(timeout=240)
            seen.append(event)
            if event["event"] in (name, "error"):
                return event

    try:
        assert until("ready")["event"] == "ready"
        target = tmp_path / "out" / "report.html"

        def send(**command) -> None:
            worker.stdin.write(protocol.encode(command) + "\n")
            worker.stdin.flush()

        send(cmd="report", id=1, path=str(target), samples=2)
        assert until("report_written") == {"event": "report_written", "reply_to": 1, "path": str(target)}
        drawn = [(e["done"], e["total"]) for e in seen if e["event"] == "progress" and e["stage"] == "report"]
        assert drawn[0][0] == 0 and drawn[-1][0] == drawn[-1][1] > 0 and len(drawn) > 2, drawn
        assert [done for done, _ in drawn] == sorted(done for done, _ in drawn), drawn
        assert not [e for e in seen if e["event"] == "progress" and e["stage"] == "sampling"]  # a round's stage, not this
        send(cmd="report", id=2, path=str(target), samples=0)
        refused = until("report_written")
        assert refused["event"] == "error" and refused["kind"] == "invalid" and "samples" in refused["message"]
        send(cmd="report", id=3, path=str(tmp_path / "quit.html"), samples=2)  # then the app quits: drawing stops
        send(cmd="shutdown")
        stopped = until("report_written")
        assert stopped["event"] == "error" and stopped["kind"] == "cancelled" and stopped["reply_to"] == 3, stopped
        assert worker.wait(timeout=120) == 0
        assert not (tmp_path / "quit.html").exists()
    finally:
        if worker.poll() is None:
            worker.kill()
    page = Figures()
    page.feed(target.read_text(encoding="utf-8"))
    assert len(page.of_class("tuned")) == len(page.of_class("base")) == 2
    assert len(page.of_class("round-image")) == 18


# the benchmark's figure ------------------------------------------------------------------------------------------


def test_the_bench_band_is_the_mean_and_standard_error_over_seeds():
    """Guards the figure's line and band: at each label count, the mean over the seeds and its standard error."""
    from hero_engine.reporting.plots import mean_and_standard_error

    curves = [[(0, 0.2), (16, 0.4)], [(0, 0.4), (16, 0.8)], [(0, 0.3), (16, 0.6)]]
    got = mean_and_standard_error(curves)
    assert [labels for labels, _, _ in got] == [0, 16]
    assert got[0][1:] == pytest.approx((0.3, 0.1 / 3 ** 0.5))
    assert got[1][1:] == pytest.approx((0.6, 0.2 / 3 ** 0.5))
    assert mean_and_standard_error([[(0, 0.5)]]) == [(0, 0.5, 0.0)]


def test_bench_redraw_draws_the_stored_results_again(tmp_path):
    """Guards `hero-tui bench --redraw` (how docs/bench-success.png is made from docs/bench-results.json): a figure at
    README width and the table, with no run."""
    out = tmp_path / "bench"
    out.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "docs" / "bench-results.json", out / "results.json")
    result = invoke("bench", "--redraw", "--out", out)
    assert result.exit_code == 0, result.output
    assert "attribute" in result.stdout and f"plot: {out / 'success.png'}" in result.stdout
    with Image.open(out / "success.png") as figure:
        assert figure.format == "PNG" and 800 <= figure.width <= 1400
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "success.png"]


def test_bench_without_the_report_extra_says_so_and_draws_no_figure(monkeypatch):
    from hero_tui.cli import _bench_figure_problem

    assert _bench_figure_problem() is None
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert 'pip install "hero[report]"' in _bench_figure_problem()


def test_bench_redraw_without_results(tmp_path):
    assert_one_line_error(invoke("bench", "--redraw", "--out", tmp_path / "none"), "run the benchmark with --out")
