"""The MLflow UI over a finished search, opened in a real headless Chromium.

A small search (4 candidates x 2 generations) is tracked into a real ``mlflow server`` on
127.0.0.1; Debian's Chromium (/usr/bin/chromium, installed by scripts/setup_browser.sh),
driven by Playwright, then shows: every candidate as a run nested under the search run,
each child's parent tags, and the Pareto front artifacts of the search run.

``MERGE3_SCREENSHOT_DIR=docs/img`` copies the runs-table screenshot there (the image in
docs/search.md).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.config import parse_config
from search.run import run_search
from search.testing.setting import search_config
from tests.mlflow_server import free_port, start_mlflow, stop_mlflow

README = Path(__file__).resolve().parents[2] / "README.md"

CHROMIUM = Path("/usr/bin/chromium")
# The network is closed: without the background-networking flags Chromium keeps trying
# (and failing) to reach Google's hosts.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
# Preferences a user sets in the UI (keys of MLflow 3.17's UI): telemetry off — its
# SharedWorker is never seen to finish loading, so the page would never go network-idle —
# and the assistant panel closed, so the runs table has the width.
UI_PREFERENCES = {"mlflow.settings.telemetry.enabled_v1": "false",
                  "mlflow.assistant.panelOpen_v1": "false",
                  "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}
TIMEOUT_MS = 90_000  # per wait: generous, for a loaded 2-core machine
POPULATION, GENERATIONS = 4, 2


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the MLflow UI test needs Debian's chromium. "
                    "Run `bash scripts/setup_browser.sh` (as root or with sudo).")
    return CHROMIUM


@pytest.fixture(scope="module")
def tracked_search(chromium, search_setting, ray_local, tmp_path_factory):
    """A finished search tracked into a live MLflow server, and what the server holds."""
    root = tmp_path_factory.mktemp("ui_search")
    port = free_port()
    server = start_mlflow(port, root / "server.db")
    try:
        url = f"http://127.0.0.1:{port}"
        config = search_config(search_setting, name="ui-search",
                               strategy={"population": POPULATION, "generations": GENERATIONS},
                               tracking={"uri": url})
        outcome = run_search(parse_config(config), root / "run", progress=False,
                             config_text=yaml.safe_dump(config))
        assert outcome.evaluated == POPULATION * GENERATIONS
        client = MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name("ui-search")
        children = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'")
        trials = {int(run.data.tags["merge3.trial"]): run for run in children}
        assert sorted(trials) == list(range(POPULATION * GENERATIONS))
        assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
        yield SimpleNamespace(url=url, experiment_id=experiment.experiment_id,
                              store=root / "server.db", parent_run_id=outcome.parent_run_id,
                              trials=trials,
                              front=sorted(r.number for r in outcome.front))
    finally:
        stop_mlflow(server)


@pytest.fixture(scope="module")
def page(chromium, tracked_search, tmp_path_factory):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    profile = tmp_path_factory.mktemp("chromium_profile")  # fresh user-data dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(chromium), args=CHROMIUM_FLAGS, headless=True,
            viewport={"width": 1280, "height": 720})
        try:
            context.set_default_timeout(TIMEOUT_MS)
            context.set_default_navigation_timeout(TIMEOUT_MS)
            context.add_init_script("".join(
                f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});"
                for k, v in UI_PREFERENCES.items()))
            yield context.new_page()
        finally:
            context.close()


def _open(page, url: str) -> None:
    page.goto(url, wait_until="networkidle")


def _children_of(search) -> list[tuple[int, object]]:
    """Candidates with recorded parents (generation >= 1), by trial number."""
    return [(trial, run) for trial, run in sorted(search.trials.items())
            if json.loads(run.data.tags["merge3.parents"])]


def test_runs_table_nests_every_candidate_under_the_search_run(page, tracked_search,
                                                                tmp_path):
    from playwright.sync_api import expect

    search = tracked_search
    _open(page, f"{search.url}/#/experiments/{search.experiment_id}/runs"
                "?workflowType=machine_learning")
    search_row = page.locator(f'[role=row][row-id="{search.parent_run_id}"]')
    expect(search_row.get_by_role("link", name="ui-search", exact=True)).to_be_visible()
    trial_links = page.get_by_role("link", name="trial-", exact=False)
    expect(trial_links).to_have_count(0)  # collapsed: the candidates are nested
    search_row.locator('[col-id="attributes.`Run Name`"] button').click()  # the expander
    for trial in search.trials:
        expect(page.get_by_role("link", name=f"trial-{trial}", exact=True)).to_be_visible()
    expect(trial_links).to_have_count(len(search.trials))

    # show the estimates and the parents as columns, hide columns a search leaves empty
    page.get_by_role("button", name="Columns").click()
    search_box = page.get_by_placeholder("Search columns")
    for column in ["est/alpha", "est/beta", "merge3.generation", "merge3.parents",
                   "Dataset", "Source", "Models"]:
        search_box.fill(column)
        page.get_by_test_id("column-selector-tree").get_by_text(column, exact=True).click()
    search_box.fill("")
    page.keyboard.press("Escape")
    for run in search.trials.values():  # each candidate row shows its own parents
        cells = page.locator(f'[role=row][row-id="{run.info.run_id}"]')
        expect(cells.locator('[col-id="tags.`merge3.parents`"]')).to_have_text(
            run.data.tags["merge3.parents"])
        estimate = cells.locator('[col-id="metrics.`est/alpha`"]')
        expect(estimate).to_have_text(re.compile(r"\d"))
        assert float(estimate.inner_text()) == pytest.approx(run.data.metrics["est/alpha"])
    expect(page.get_by_role("dialog")).to_have_count(0)

    shot = tmp_path / "mlflow_ui.png"
    page.screenshot(path=shot)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MERGE3_SCREENSHOT_DIR"):
        out = Path(os.environ["MERGE3_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / shot.name)


def test_candidate_page_shows_its_parent_tags_and_links_to_the_search_run(page,
                                                                          tracked_search):
    from playwright.sync_api import expect

    search = tracked_search
    children = _children_of(search)
    assert len(children) >= POPULATION
    trial, run = children[-1]
    parents = json.loads(run.data.tags["merge3.parents"])
    parent_runs = json.loads(run.data.tags["merge3.parent_runs"])
    assert parent_runs == [search.trials[p].info.run_id for p in parents]

    _open(page, f"{search.url}/#/experiments/{search.experiment_id}/runs/{run.info.run_id}")
    expect(page.get_by_role("heading", name=f"trial-{trial}", exact=True)).to_be_visible()
    tags = page.locator("[data-component-type=tag]")
    for key, value in [("merge3.trial", str(trial)),
                       ("merge3.parents", run.data.tags["merge3.parents"]),
                       ("merge3.parent_runs", run.data.tags["merge3.parent_runs"])]:
        tag = tags.filter(has=page.get_by_title(key, exact=True)).last  # chips nest
        expect(tag).to_be_visible()
        expect(tag).to_have_text(f"{key}: {value}")

    parent_link = page.get_by_test_id("key-value-Parent run").get_by_role("link")
    expect(parent_link).to_have_text("ui-search")
    parent_link.click()
    expect(page).to_have_url(f"{search.url}/#/experiments/{search.experiment_id}/runs/"
                             f"{search.parent_run_id}")
    expect(page.get_by_role("heading", name="ui-search", exact=True)).to_be_visible()


def test_search_run_shows_the_pareto_front_artifacts(page, tracked_search):
    from playwright.sync_api import expect

    search = tracked_search
    _open(page, f"{search.url}/#/experiments/{search.experiment_id}/runs/"
                f"{search.parent_run_id}/artifacts")
    tree = page.get_by_test_id("artifact-tree-node")
    for name in ["fronts", "anchors", "config.yaml"]:
        expect(tree.and_(page.get_by_label(name, exact=True))).to_be_visible()
    tree.and_(page.get_by_label("fronts", exact=True)).click()
    last = GENERATIONS - 1
    for generation in range(GENERATIONS):
        for suffix in ("md", "png"):
            expect(tree.and_(page.get_by_label(f"front_gen{generation:03d}.{suffix}",
                                               exact=True))).to_be_visible()
    expect(tree.and_(page.get_by_label("lineage.png", exact=True))).to_be_visible()

    # the last front's table (the UI renders the markdown): a row per front member
    tree.and_(page.get_by_label(f"front_gen{last:03d}.md", exact=True)).click()
    table = page.get_by_role("table").filter(
        has=page.get_by_role("columnheader", name="trial", exact=True))
    rows = table.get_by_role("row").filter(has=page.get_by_role("cell"))
    expect(rows).to_have_count(len(search.front))
    members = [int(row.get_by_role("cell").first.inner_text()) for row in rows.all()]
    assert sorted(members) == search.front

    # the last front's plot: served by the server and decoded by the browser
    tree.and_(page.get_by_label(f"front_gen{last:03d}.png", exact=True)).click()
    image = page.get_by_role("img", name=f"fronts/front_gen{last:03d}.png").first
    expect(image).to_be_visible()
    page.wait_for_function("image => image.complete && image.naturalWidth > 100",
                           arg=image.element_handle())


def _readme_command() -> list[str]:
    """The README's `mlflow server` command, its continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    block = next(b for b in blocks if "mlflow server" in b)
    return shlex.split(block.replace("\\\n", " "))


def test_the_readme_command_serves_the_demo_store_and_opens_on_the_runs(
        chromium, page, tracked_search, tmp_path):
    """The README's own command, run as written from a checkout's root, serves the store
    `merge3 demo` writes, and the README's link leads to the search's runs (MLflow 3 opens
    on its GenAI view otherwise)."""
    from playwright.sync_api import expect

    from merge3.cli import build_parser
    from search.demo import demo_search_config

    command = _readme_command()
    store = command[command.index("--backend-store-uri") + 1].removeprefix("sqlite:///")
    demo = build_parser().parse_args(["demo"])
    name = demo_search_config(tmp_path, tmp_path, size=demo.size, population=2,
                              generations=1, anchors=1, workers=1)["name"]
    assert Path(store) == Path(demo.out) / name / "mlflow.db", "README and demo disagree"

    checkout = tmp_path / "checkout"  # a checkout's root whose demo tracked this search
    (checkout / store).parent.mkdir(parents=True)
    shutil.copy(tracked_search.store, checkout / store)
    port = free_port()
    command[0] = str(Path(sys.executable).parent / "mlflow")  # .venv/bin/mlflow
    command[command.index("--port") + 1] = str(port)
    server = start_mlflow(port, checkout / store, command=command, cwd=checkout)
    try:
        url = f"http://127.0.0.1:{port}"
        experiment = MlflowClient(tracking_uri=url).get_experiment_by_name("ui-search")
        assert experiment is not None
        link = re.search(r"http://127\.0\.0\.1:5000(/\S*)", README.read_text()).group(1)
        assert f"/experiments/{experiment.experiment_id}/" in link
        _open(page, f"{url}{link}")  # a new origin: none of the other tests' UI settings
        search_row = page.locator(f'[role=row][row-id="{tracked_search.parent_run_id}"]')
        expect(search_row.get_by_role("link", name="ui-search", exact=True)).to_be_visible()
    finally:
        stop_mlflow(server)
