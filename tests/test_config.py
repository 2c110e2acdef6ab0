import pytest

from batch.cli.common import load_checked_pipeline
from batch.config import load_environment, load_pipeline, parse_set_options
from batch.errors import ConfigError


def test_demo_pipeline_loads_in_every_environment():
    for env in ("local", "dev", "staging", "prod"):
        cfg = load_pipeline("demo", env)
        assert cfg.name == "demo"
    assert load_pipeline("demo", "dev").model.params["iterations"] == 5
    assert load_pipeline("demo", "local").model.params["iterations"] == 15
    assert load_pipeline("demo", "prod").candidates.shard_count == 8
    assert load_pipeline("demo", "prod").source.events_table == "reco_work.demo_events"


def test_set_overrides_one_value_with_short_model_form():
    cfg = load_pipeline("demo", "local", parse_set_options(["model.factors=8", "aggregate.lookback_days=60"]))
    assert cfg.model.params["factors"] == 8
    assert cfg.aggregate.lookback_days == 60
    # the base is untouched for the next load
    assert load_pipeline("demo").model.params["factors"] == 64


@pytest.mark.parametrize(
    "override, field",
    [
        ("aggregate.lookback_days=abc", "--set aggregate.lookback_days"),
        ("aggregate.lookback_days=0", "--set aggregate.lookback_days"),
        ("model.factors=-3", "factors"),
        ("model.type=nope", "model"),
        ("candidates.sources=[personal, everything]", "candidates.sources"),
        ("aggregate.unknown_field=1", "aggregate.unknown_field"),
        ("export.table=recs; DROP TABLE x", "export.table"),
        ("source.events_table=a.b.c.d", "source.events_table"),
    ],
)
def test_invalid_override_names_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        load_checked_pipeline("demo", "local", parse_set_options([override]))  # the graph names the sources
    assert field in str(e.value)


def test_malformed_set_option():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_set_options(["model.factors"])


def _write_config(tmp_path, text):
    (tmp_path / "pipelines").mkdir(parents=True)
    (tmp_path / "environments.yaml").write_text("environments: {local: {runner: local}}\n")
    path = tmp_path / "pipelines" / "broken.yaml"
    path.write_text(text)
    return path


def test_invalid_file_names_file_and_field(tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_CONFIG_DIR", str(tmp_path))
    path = _write_config(
        tmp_path,
        "name: broken\nsource: {events_table: ev}\nexport: {table: out}\n"
        "aggregate: {event_weights: {view: -1}}\n",
    )
    with pytest.raises(ConfigError) as e:
        load_pipeline("broken")
    assert str(path) in str(e.value) and "aggregate.event_weights" in str(e.value)


def test_missing_required_section_and_bad_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_CONFIG_DIR", str(tmp_path))
    _write_config(tmp_path, "name: broken\nsource: {events_table: ev}\n")
    with pytest.raises(ConfigError, match="field 'export'"):
        load_pipeline("broken")
    (tmp_path / "pipelines" / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline("broken")


def test_unknown_pipeline_lists_known_ones():
    with pytest.raises(ConfigError, match="known pipelines: .*demo"):
        load_pipeline("does_not_exist")


def test_cloud_environment_needs_its_project_variable(monkeypatch):
    monkeypatch.delenv("GCP_PROJECT", raising=False)
    with pytest.raises(ConfigError, match="GCP_PROJECT"):
        load_environment("prod")
    monkeypatch.setenv("GCP_PROJECT", "acme-reco-prod")
    env = load_environment("prod")
    assert env.runner == "gke" and env.warehouse.backend == "bigquery"
    assert env.resolved_artifact_root() == "gs://acme-reco-prod-reco-artifacts/artifacts"


def test_local_environment_lives_under_reco_home(reco_home):
    env = load_environment("local")
    assert env.resolved_artifact_root() == str(reco_home / "artifacts")
    assert env.resolved_duckdb_path() == str(reco_home / "warehouse.duckdb")
