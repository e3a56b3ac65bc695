-- sandlot.cli.rm: `sandlot rm ID...`; see sandlot.cli._rm (shared with `sandlot destroy`).
return require("sandlot.cli._rm")("rm")
