"""The sweep report in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium) opens a finished sweep's ``report.html`` and checks that it renders without console errors, that every
section and every figure the file holds is shown (images decoded, with a size), and that the audio sample loads.

A full-page screenshot is written to ``tests/artifacts/`` (ignored by git) before the checks, so a failure can be
looked at. Without the browser the test is skipped, except under CI (``CI`` set), where it fails: ``.ci/run``
installs the browser.

The page is opened from ``file://``, as users open the report (it is one self-contained file, mailed or downloaded
from MLflow): the images and the audio are data URIs, which Chromium loads from a file page, and there is no server
to add requests of its own (an HTTP server would draw a ``/favicon.ico`` 404 into the console).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import optuna
import pytest
import soundfile
from optuna.trial import TrialState

from tests.helpers.report_studies import Sections, frozen, write_media
from tuner_callbacks.report import build_report
from tuner_callbacks.report.data import best_trials

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL = "apt-get install chromium chromium-driver (Debian), and pip install -e '.[dev]' for selenium"
WAIT_S = 30  # for the page's images and audio; a loaded CI machine may be slow

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _unavailable(reason: str) -> None:
    message = f"{reason}: the browser test needs Chromium, chromedriver and selenium ({INSTALL}; .ci/run does it)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{message}. CI must run this test, not skip it.")
    pytest.skip(message)


@pytest.fixture
def chromium(tmp_path):
    """Headless Chromium through Debian's chromedriver, given by path so selenium-manager never downloads one;
    console messages of every level are kept for ``get_log("browser")``."""
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    driver_path = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver_path)) if path is None]
    if missing:
        _unavailable(f"not found on PATH: {' and '.join(missing)}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        _unavailable(f"selenium is not installed ({error})")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--mute-audio"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture(params=[1, 2], ids=["single-objective", "multi-objective"])
def report(request, tmp_path):
    """A finished sweep's report: complete, pruned and failed trials with learning curves and many logged metrics
    (a wide table); the best trial has validation media (alignment and mel plots, a Griffin-Lim sample) in its run
    folder. Two objectives add the Pareto front and one plot per objective."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    objectives = request.param
    study = optuna.create_study(study_name="search", storage=storage, directions=["minimize"] * objectives)
    plan = [(TrialState.COMPLETE, 0.50, 1000), (TrialState.COMPLETE, 0.20, 1000), (TrialState.COMPLETE, 0.40, 800),
            (TrialState.PRUNED, 0.90, 300), (TrialState.FAIL, None, 120), (TrialState.COMPLETE, 0.35, 1000)]
    for number, (state, value, steps) in enumerate(plan):
        # A second objective that trades off against the first, so the front has several trials.
        values = None if value is None else [value, 1.0 - value][:objectives]
        metrics = {f"val/a_rather_long_metric_name_{index}": value + index for index in range(25)} if value else {}
        study.add_trial(frozen(number, state, values=values, seconds=10 + steps / 10, steps=range(100, steps + 1, 100),
                               user_attrs={"output_dir": str(tmp_path / f"job{number}"), "global_step": steps,
                                           "max_steps": 1000, "metrics": metrics,
                                           **({"error": "RuntimeError: <out of memory>"}
                                              if state == TrialState.FAIL else {})}))
    shown = best_trials(study)[0]  # the trial whose media the report shows
    media = write_media(tmp_path / f"job{shown.number}", 50, shade=0.9)
    out = build_report(storage, "search", tmp_path / "report.html", log_to_mlflow=False)
    return {"path": out, "html": Sections(out.read_text(encoding="utf-8")), "media": media,
            "objectives": objectives, "name": f"report-{request.node.callspec.id}"}


# The nav's links (and how many line boxes each takes), how far the page overflows the window sideways, and per
# section: id, heading, box size, and each image's alt, decode result and sizes, once every image has decoded (or
# failed to).
_SECTIONS_JS = """
const done = arguments[arguments.length - 1];
const sections = [...document.querySelectorAll("body > section")];
const images = sections.flatMap(s => [...s.querySelectorAll("img")]);
Promise.allSettled(images.map(img => img.decode())).then(results => {
  const decoded = new Map(images.map((img, i) => [img, results[i].status === "fulfilled" ? ""
                                                                                : String(results[i].reason)]));
  done({
    nav: [...document.querySelectorAll("nav a")].map(a => [a.getAttribute("href"), a.textContent]),
    navBoxes: [...document.querySelectorAll("nav a")].map(a => a.getClientRects().length),
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    sections: sections.map(s => ({
      id: s.id, heading: s.querySelector(":scope > h2")?.textContent ?? null,
      width: s.getBoundingClientRect().width, height: s.getBoundingClientRect().height, text: s.innerText,
      images: [...s.querySelectorAll("img")].map(img => ({
        alt: img.alt, error: decoded.get(img), naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
        width: img.getBoundingClientRect().width, height: img.getBoundingClientRect().height})),
      audio: s.querySelectorAll("audio").length})),
  });
});
"""

# Each audio element once it has its metadata (duration known) or an error; it asks for the metadata itself in case
# the browser's preload policy would not.
_AUDIO_JS = """
const done = arguments[arguments.length - 1];
const state = a => ({readyState: a.readyState, duration: a.duration,
                     error: a.error ? `MediaError ${a.error.code}: ${a.error.message}` : null,
                     section: a.closest("section")?.id ?? null});
Promise.all([...document.querySelectorAll("audio")].map(a => new Promise(resolve => {
  if (a.error || a.readyState >= HTMLMediaElement.HAVE_METADATA) return resolve(state(a));
  a.addEventListener("loadedmetadata", () => resolve(state(a)), {once: true});
  a.addEventListener("error", () => resolve(state(a)), {once: true});
  if (a.preload === "none") { a.preload = "metadata"; a.load(); }
}))).then(done);
"""


def _screenshot(driver, path: Path) -> Path:
    """The whole page, beyond the window, through the DevTools protocol (Selenium's Chrome driver has no
    full-page screenshot of its own)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


@pytest.mark.slow
def test_report_renders_in_chromium_with_every_section_figure_and_audio(chromium, report, record_property):
    expected = report["html"]
    chromium.get(report["path"].as_uri())
    page = chromium.execute_async_script(_SECTIONS_JS)
    audio = chromium.execute_async_script(_AUDIO_JS)
    screenshot = _screenshot(chromium, ARTIFACTS / f"{report['name']}.png")
    record_property("screenshot", str(screenshot))
    print(f"screenshot of {report['path']}: {screenshot}")
    console = chromium.get_log("browser")

    # The console is really collected: a message written now is read back.
    chromium.execute_script("console.error('smart-tuner console probe')")
    assert any("smart-tuner console probe" in entry["message"] for entry in chromium.get_log("browser"))
    errors = [f"{entry['level']}: {entry['message']}" for entry in console if entry["level"] == "SEVERE"]
    assert not errors, f"console errors in {report['path']} (screenshot {screenshot}):\n" + "\n".join(errors)

    # Every section of the file, in its order, shown with its heading and a nav link to it.
    shown = {s["id"]: s for s in page["sections"]}
    assert [s["id"] for s in page["sections"]] == expected.order
    assert page["nav"] == [[f"#{id_}", expected.found[id_]["title"]] for id_ in expected.order]
    assert set(page["navBoxes"]) == {1}, f"a nav link is broken over lines: {page['navBoxes']}"
    assert page["overflow"] <= 0, f"the page is {page['overflow']} px wider than the window"
    for id_ in expected.order:
        section = shown[id_]
        assert section["heading"] == expected.found[id_]["title"] != ""
        assert section["width"] > 0 and section["height"] > 0, f"section {id_} is not laid out: {section}"
        # A plot that could not be drawn becomes a note; this study can draw every one.
        assert "not drawn" not in section["text"], f"section {id_}: {section['text']}"

        # Every figure of the section, decoded, with its size on the page.
        assert [image["alt"] for image in section["images"]] == expected.found[id_]["alts"], id_
        for image in section["images"]:
            assert not image["error"], f"section {id_}: image {image['alt']!r} did not decode: {image['error']}"
            assert min(image["naturalWidth"], image["naturalHeight"], image["width"], image["height"]) > 0, (
                f"section {id_}: image {image['alt']!r} has no size: {image}")
        assert section["audio"] == len(expected.found[id_]["audio"]), id_

    # The study has figures wherever the report draws them: one per objective, the front of two objectives, the
    # learning curves, and the best trial's three media images with its audio.
    objectives = report["objectives"]
    counts = {id_: len(section["images"]) for id_, section in shown.items()}
    assert counts == {"summary": 0, "history": objectives, "importances": objectives, "parallel": objectives,
                      "slices": objectives, "pareto": objectives - 1, "trials": 0, "metrics": 0, "pruning": 1,
                      "media": 3}

    # The audio sample loads: its metadata is read, with the duration of the WAV the trial wrote.
    wav = soundfile.info(io.BytesIO(report["media"]["audio"]))
    assert [(a["section"], a["error"]) for a in audio] == [("media", None)], audio
    assert audio[0]["readyState"] >= 1 and audio[0]["duration"] == pytest.approx(wav.duration, abs=1e-3), audio
