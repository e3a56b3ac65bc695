-- sandlot._base64: kept for callers not yet moved to sandlot.wire.base64 (the one implementation).
return require("sandlot.wire.base64")
