error("nope")
