"""Every recommender the pipelines define has its export tables in every cloud environment's Terraform."""

from tf_helpers import load_settings, strip_meta

from batch.config import list_pipelines, load_pipeline

CLOUD_ENVS = ("dev", "staging", "prod")


def test_each_pipeline_exports_to_a_table_terraform_creates() -> None:
    pipelines = list_pipelines()
    assert "demo" in pipelines
    for env in CLOUD_ENVS:
        recommenders = set(strip_meta(load_settings(env)["recommenders"]))
        for name in pipelines:
            cfg = load_pipeline(name, env)
            assert cfg.export.table == f"reco_export.recommendations_{name}", (
                f"config/pipelines/{name}.yaml (env {env}): export.table must be the table Terraform creates"
            )
            assert name in recommenders, f"envs/{env}/terraform.tfvars: add {name!r} to settings.recommenders"
