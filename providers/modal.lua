-- providers/modal.lua: Modal sandboxes are NOT built yet. Modal's API is gRPC only
-- (../shared/provider-apis/modal.md): it needs gRPC framing over libcurl's HTTP/2 and a
-- protobuf codec for the messages used, tested against a gRPC fake (@grpc/grpc-js). modal@0.11.1
-- on npm ships no .proto files (its schema is compiled into dist/index.js), so the fake's
-- schema must first be rebuilt from that bundle and checked against the SDK. Until then this
-- file exists so that
-- `sandlot.create("modal")` is a clear not_supported naming the reason, not an unknown name.
local errors = require("sandlot.errors")

local WHY = "the modal provider is not built yet: Modal's API is gRPC only, and sandlot has " ..
            "no gRPC client (HTTP/2 framing and a protobuf codec) yet; see the README's " ..
            "provider table"

local function not_built()
  return nil, errors.new("not_supported", WHY)
end

return {
  name = "modal",
  description = "Modal sandboxes (not built yet: gRPC only)",
  capabilities = { remote = true },
  config = { token_id = "string", token_secret = "string", environment = "string" },
  create = not_built,
  destroy = not_built,
  status = not_built,
  exec = not_built,
}
