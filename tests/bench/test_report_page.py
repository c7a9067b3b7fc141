"""The run report from real files: the HTML page (also in headless Chromium), the Markdown, what is refused.

The run directory is what `make demo` leaves, made of real files: the training summary and
export record of a small real run, committed under data/run/ as alexnet.train and
`python -m export` wrote them (2 ranks, 67 px, 4,000 Fashion-MNIST images, 3 epochs; exported
with float16 and int8 variants), and bench results measured for real when these files were made, on a
helper model (a sweep, a compare against a variant, a single-stream load test, a check of the
sweep against itself, a profile and a short tune).

The browser test needs Debian's `chromium` and `chromium-driver` and the `selenium` package;
it is skipped, saying which is missing, where they are not installed.
"""
from __future__ import annotations

import base64
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from bench import report, results
from toolkit.runs import ExportRecord, RunDir

DATA = Path(__file__).parent / "data" / "run"
FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
MEASURE = ("--warmup", "1", "--min-time", "0.3", "--min-iterations", "5", "--quiet", "--images", FASHION)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# What the headless browser needs here: no sandbox (root in a container), no GPU, and nothing
# that reaches the network by itself (QUIC, background updates, sync, component downloads).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
PHONE_WIDTH = 390
BENCHES = ("sweep", "compare", "load", "check", "profile", "tune")


@pytest.fixture(scope="module")
def measured_run(bench, helper_models, tmp_path_factory) -> RunDir:
    """A run directory with the real training summary and export record, and real bench results; its report."""
    run = RunDir(tmp_path_factory.mktemp("run"))
    for name in ("summary.json", "alexnet.onnx.json"):
        shutil.copy(DATA / name, run.root / name)
    model = run.root / "model" / "image.onnx"   # below the run: tune's settings file there names models below it
    model.parent.mkdir()
    shutil.copy(helper_models["image"], model)
    done = bench("sweep", "--model", model, "--batch", "1,4", "--json", run.bench("sweep"), *MEASURE)
    assert done.returncode == 0, done.stderr
    done = bench("compare", "--model", model, "--batch", "2", "--no-tensorflow", "--rounds", "1",
                 "--variant", f"onnxruntime copy={model}", "--json", run.bench("compare"), *MEASURE)
    assert done.returncode == 0, done.stderr
    done = bench("load", "--model", model, "--scenario", "single-stream", "--min-duration", "0.3", "--warmup", "1",
                 "--quiet", "--images", FASHION, "--json", run.bench("load"))
    assert done.returncode == 0, done.stderr
    done = bench("check", run.bench("sweep"), "--baseline", run.bench("sweep"), "--quiet", "--json", run.bench("check"))
    assert done.returncode == 0, done.stderr
    done = bench("profile", "--model", model, "--batch", "4", "--json", run.bench("profile"), *MEASURE)
    assert done.returncode == 0, done.stderr
    done = bench("tune", "--model", model, "--batch", "1,4", "--passes", "1", "--candidates", "2", "--rounds", "2",
                 "--confirm-time", "0.3", "-o", run.root / "image.tuned.json", "--json", run.bench("tune"), "--warmup",
                 "1", "--min-time", "0.05", "--min-iterations", "5", "--quiet", "--images", FASHION)
    assert done.returncode == 0, done.stderr
    run.plots.mkdir()
    # No --run: the report finds the run where the first results file is.
    done = bench("report", *(run.bench(name) for name in BENCHES), "--html", run.report_html,
                 "--export", run.report_md, "--plot-dir", run.plots)
    assert done.returncode == 0, done.stderr
    return run


def _key_numbers(run: RunDir) -> list[str]:
    """The test accuracy, every row's samples/s, the load test's verdict and p90, the profile's top operator, and
    the tune's chosen setting, as the report formats them."""
    rows = [row for name in ("sweep", "compare", "tune") for row in results.load(run.bench(name)).rows]
    (test,) = results.load(run.bench("load")).load
    (profile,) = results.load(run.bench("profile")).profiles
    chosen = results.load(run.bench("tune")).tune.chosen
    return [f"{run.read_summary().test_accuracy:.2%}", *(f"{r.throughput.samples_per_second:,.1f}" for r in rows),
            f"{'VALID' if test.valid else 'INVALID'}, p90 latency ms {report._ms(test.metric_value)}",
            "no verdict in 2 rows (one run a side",
            f"{profile.ops[0].name}, {profile.share(profile.ops[0]):.1%} of the kernel time",
            f"graph {chosen.graph_optimization}, {chosen.execution_mode}, batch {chosen.batch}"]


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


def test_the_page_has_every_part_of_the_run(measured_run):
    page = measured_run.report_html.read_text()
    sections = re.findall(r'<section id="([^"]+)">', page)
    assert sections == ["summary", "training", "export", "bench-1-sweep", "bench-2-compare", "bench-3-load",
                        "bench-4-check", "bench-5-profile", "bench-6-tune", "plots", "environment"]
    for number in _key_numbers(measured_run):
        assert number in page
    record = ExportRecord.read(measured_run.export_record)
    assert all(f.name in page for f in record.files) and "alexnet.int8.onnx" in page
    # Loss and accuracy per epoch, throughput vs batch, one latency CDF per batch size (1, 2, 4), and the
    # tune's Pareto front: the same plots as the Markdown report's files.
    assert len(_images(page)) == 7 == len(list(measured_run.plots.iterdir()))
    # Each measured result's resources and cold start; the profile's operators, the tune's front.
    for name in ("sweep", "compare", "load", "profile", "tune"):
        section = page.split(f'<section id="bench-{BENCHES.index(name) + 1}-{name}">')[1].split("</section>")[0]
        assert "resources and cold start, read from the measuring process" in section, name
    assert "op types" in page and "Pareto front, throughput vs p99" in page


def test_the_page_is_self_contained(measured_run):
    """Nothing to fetch: no script, no stylesheet or font link, plots inline with their glyphs as paths."""
    page = measured_run.report_html.read_text()
    assert not re.search(r"<script|<link|@import|url\(|(src|href)=\"(?!#|data:)", page)
    for source in _images(page):
        assert source.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(source.split(",", 1)[1]).decode()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<text" not in svg
        assert not re.search(r"href=\"(?!#)", svg)


def test_the_markdown_embeds_the_same_plots_by_relative_path(measured_run):
    markdown = measured_run.report_md.read_text()
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert links and all(not Path(link).is_absolute() for link in links)
    assert sorted(links) == sorted(f"plots/{p.name}" for p in measured_run.plots.iterdir())
    assert "## Training" in markdown and "## Export to ONNX" in markdown
    for number in _key_numbers(measured_run):
        assert number in markdown


def test_bench_results_alone_give_a_page_of_what_exists(measured_run, bench, tmp_path):
    shutil.copy(measured_run.bench("sweep"), tmp_path / "sweep.json")
    done = bench("report", tmp_path / "sweep.json", "--html", tmp_path / "r.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "r.html").read_text()
    assert re.findall(r'<section id="([^"]+)">', page) == ["summary", "bench-1-sweep", "plots", "environment"]
    assert "<title>Benchmark report</title>" in page


@pytest.mark.parametrize("args, message", [
    (["--run", "{tmp}/absent", "--html", "{tmp}/r.html"], "--run {tmp}/absent: no such directory"),
    (["--html", "{tmp}/r.htm"], "the page's name must end in .html"),
    (["--run", "{broken}", "--html", "{tmp}/r.html", "--plot-dir", "{tmp}"],
     "summary.json is a malformed training summary"),
    (["--run", "{old_record}", "--html", "{tmp}/r.html"], "export record version 9, newer than this toolkit"),
    (["--export", "{tmp}/r.md", "--export", "{tmp}/r.pdf"], "cannot export to r.pdf"),
])
def test_bad_input_is_one_line_and_nothing_is_written(measured_run, bench, tmp_path, args, message):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text('{"schema": "alexnet-toolkit/train-summary", "version": 1}')
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "alexnet.onnx.json").write_text('{"schema": "alexnet-toolkit/export-record", "version": 9}')
    names = dict(tmp=tmp_path, broken=tmp_path / "broken", old_record=tmp_path / "newer")
    done = bench("report", measured_run.bench("sweep"), *(a.format(**names) for a in args))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: ") and message.format(**names) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "newer"]


def _chromium(user_data_dir: Path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path given: Selenium Manager, which would download one, is never asked.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


IMAGES = "return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.clientWidth])"
OVERFLOW = "return [document.documentElement.scrollWidth, window.innerWidth]"
FETCHED = "return performance.getEntriesByType('resource').map(e => e.name)"


@pytest.mark.browser
def test_the_page_in_headless_chromium(measured_run, tmp_path):
    """No console error, every plot decoded, the key numbers on the page, nothing wider than a phone."""
    driver = _chromium(Path(tempfile.mkdtemp(dir=tmp_path)))
    try:
        shots = []
        for width, height in ((1280, 900), (PHONE_WIDTH, 844)):
            driver.set_window_size(width, height)
            driver.get(measured_run.report_html.resolve().as_uri())
            images = driver.execute_script(IMAGES)
            assert len(images) == 7 and all(done and w > 0 and h > 0 and shown > 0 for done, w, h, shown in images)
            scroll_width, inner_width = driver.execute_script(OVERFLOW)
            assert inner_width == width and scroll_width <= inner_width, f"the page overflows at {width} px"
            assert driver.execute_script(FETCHED) == []
            text = driver.find_element("tag name", "body").text
            for number in _key_numbers(measured_run):
                assert number in text
            shots.append(tmp_path / f"report-{width}.png")
            assert driver.save_screenshot(str(shots[-1]))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@pytest.mark.browser
def test_a_console_error_would_be_seen(tmp_path):
    """The browser log the test above reads does carry a page's errors: the check can fail."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA"><script>'
                    'console.error("seen")</script></body></html>')
    driver = _chromium(Path(tempfile.mkdtemp(dir=tmp_path)))
    try:
        driver.get(page.as_uri())
        assert any('"seen"' in e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE")
        assert driver.execute_script(IMAGES)[0][1] == 0   # an image that does not decode has no natural size
    finally:
        driver.quit()


@pytest.mark.parametrize("outputs, message", [
    (["--export", "{out}/a.md", "--html", "{out}/b.html"], "output {out}/b.html is a directory"),
    (["--export", "{out}/a.md", "--export", "{out}/b.html"], "output {out}/b.html is a directory"),
    (["--export", "{out}/a.md", "--plot-dir", "{out}/a.txt"], "--plot-dir {out}/a.txt is not an existing directory"),
])
def test_an_output_that_cannot_be_written_is_refused_before_any_is_written(bench, tmp_path, outputs, message):
    """a.md first, then a path that is a directory (or a plot directory that is a file): one line, nothing written."""
    source = tmp_path / "in" / "r.json"
    source.parent.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "sweep-v3.json", source)
    out = tmp_path / "out"
    (out / "b.html").mkdir(parents=True)
    (out / "a.txt").write_text("")
    done = bench("report", source, *(a.format(out=out) for a in outputs))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: ") and message.format(out=out) in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.html"] and not any((out / "b.html").iterdir())
