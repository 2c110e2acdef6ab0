# State addresses from before modules/platform: the module calls moved into module.platform. Terraform moves the
# state on the next plan/apply instead of destroying and recreating everything; keep until every copy of the
# state has been applied once with this layout.

moved {
  from = module.project
  to   = module.platform.module.project
}

moved {
  from = module.network
  to   = module.platform.module.network
}

moved {
  from = module.gke
  to   = module.platform.module.gke
}

moved {
  from = module.registry
  to   = module.platform.module.registry
}

moved {
  from = module.storage
  to   = module.platform.module.storage
}

moved {
  from = module.bigquery
  to   = module.platform.module.bigquery
}

moved {
  from = module.secrets
  to   = module.platform.module.secrets
}

moved {
  from = module.iam
  to   = module.platform.module.iam
}

moved {
  from = module.cloudsql
  to   = module.platform.module.cloudsql
}

moved {
  from = module.iap
  to   = module.platform.module.iap
}
