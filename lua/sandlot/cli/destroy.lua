-- sandlot.cli.destroy: `sandlot destroy ID...`, the name that pairs with `sandlot create`;
-- the same command as `sandlot rm` (sandlot.cli._rm).
return require("sandlot.cli._rm")("destroy")
