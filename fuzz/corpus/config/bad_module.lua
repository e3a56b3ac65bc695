return { providers = { x = { 42 } } }
