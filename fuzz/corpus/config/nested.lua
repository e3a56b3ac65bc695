return { providers = { x = { "local", nested = { a = { b = { 1, 2, true } } } } } }
