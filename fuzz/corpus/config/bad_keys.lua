return { providers = { ["bad name"] = "local" }, extra = 1 }
