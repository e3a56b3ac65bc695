-- spec/conformance/check.lua: the suite as `sandlot check-provider` runs it, against the target
-- the command put in package.loaded["spec.conformance.target"]. Not named *_spec.lua, so the
-- project's own test run does not pick it up.
local target = package.loaded["spec.conformance.target"]
assert(type(target) == "table", "run this through `sandlot check-provider FILE_OR_NAME`")
require("spec.conformance")(target)
