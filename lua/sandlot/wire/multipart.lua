-- sandlot.wire.multipart: multipart/form-data bodies (RFC 7578) for file uploads, written as
-- pieces so file data is never copied, with a random boundary checked against the data; and
-- a parser for fakes that must read such bodies.
local id = require("sandlot.id")
local errors = require("sandlot.errors")

local M = {}

M.MAX_PARTS = 10000

local function check_token(what, s)
  if type(s) ~= "string" or s:find('[%c"\\]') then
    error("multipart: " .. what .. " must be a string without quotes, backslashes or " ..
          "control characters", 3)
  end
end

---Builds a body. parts = {{name, data, filename?, content_type?}...}; data is a string, or a
---source {size = bytes, read = producer} (sandlot.fs.source: a host file, read in its turn).
---Returns the pieces (strings and sources, to stream one after another: an api client's
---opts.body takes them), their total size, and the Content-Type header value.
---@param parts table[]
---@return string[] pieces, integer size, string content_type
function M.encode(parts)
  if type(parts) ~= "table" then error("multipart.encode: parts must be a list", 2) end
  for _, p in ipairs(parts) do
    check_token("a part's name", p.name)
    if p.filename ~= nil then check_token("a filename", p.filename) end
    if p.content_type ~= nil then check_token("a content type", p.content_type) end
    local d = p.data
    if type(d) ~= "string" and not (type(d) == "table" and math.type(d.size) == "integer"
                                    and d.size >= 0 and type(d.read) == "function") then
      error("multipart.encode: a part's data must be a string or a source {size, read}", 2)
    end
  end
  local boundary
  repeat                                   -- 192 random bits: a clash is for the paranoid
    boundary = "sandlot-" .. id.hex(24)    -- (a source's data is not searched: never read twice)
    local clash = false
    for _, p in ipairs(parts) do
      if type(p.data) == "string" and p.data:find(boundary, 1, true) then clash = true; break end
    end
  until not clash
  local pieces, size = {}, 0
  local function add(s)
    pieces[#pieces + 1] = s
    size = size + #s
  end
  for _, p in ipairs(parts) do
    local head = { "--" .. boundary, 'Content-Disposition: form-data; name="' .. p.name .. '"' ..
                   (p.filename and ('; filename="' .. p.filename .. '"') or "") }
    if p.content_type or p.filename then
      head[#head + 1] = "Content-Type: " .. (p.content_type or "application/octet-stream")
    end
    add(table.concat(head, "\r\n") .. "\r\n\r\n")
    if type(p.data) == "table" then        -- a source: streamed in its turn
      pieces[#pieces + 1] = p.data
      size = size + p.data.size
    elseif #p.data > 0 then add(p.data) end
    add("\r\n")
  end
  add("--" .. boundary .. "--\r\n")
  return pieces, size, "multipart/form-data; boundary=" .. boundary
end

local function bad(fmt, ...)
  return nil, errors.new("bad_response", "multipart: " .. fmt:format(...), { retryable = false })
end

---Parses a multipart/form-data body (for fakes). Returns {{name, filename, content_type,
---headers, data}...}.
---@param body string
---@param content_type string the request's Content-Type (gives the boundary)
---@return table[]|nil parts
---@return sandlot.Error? err bad_response (invalid_input would be the server's answer)
function M.parse(body, content_type)
  if type(body) ~= "string" then return bad("expected the body as a string") end
  local boundary = type(content_type) == "string" and
                   (content_type:match('boundary="([^"]+)"') or
                    content_type:match("boundary=([^;%s]+)"))
  if not content_type or not content_type:lower():find("^multipart/form%-data") then
    return bad("not multipart/form-data: %s", tostring(content_type))
  end
  if not boundary or #boundary > 70 then return bad("no usable boundary in the content type") end
  local delim = "--" .. boundary
  if body:sub(1, #delim) ~= delim then return bad("the body does not start with the boundary") end
  local parts = {}
  local pos = #delim + 1
  while true do
    if body:sub(pos, pos + 1) == "--" then return parts end          -- the close delimiter
    if body:sub(pos, pos + 1) ~= "\r\n" then return bad("a boundary line is malformed") end
    pos = pos + 2
    local hend = body:find("\r\n\r\n", pos, true)
    if not hend then return bad("a part's headers are cut short") end
    local headers = {}
    for line in body:sub(pos, hend - 1):gmatch("[^\r\n]+") do
      local k, v = line:match("^([^:]+):%s*(.-)%s*$")
      if not k then return bad("a malformed header line in a part") end
      headers[k:lower()] = v
    end
    local nxt = body:find("\r\n" .. delim, hend + 4, true)
    if not nxt then return bad("a part is cut short (no closing boundary)") end
    local cd = headers["content-disposition"] or ""
    if #parts >= M.MAX_PARTS then return bad("more than %d parts", M.MAX_PARTS) end
    parts[#parts + 1] = {
      name = cd:match('[; ]name="([^"]*)"'), filename = cd:match('filename="([^"]*)"'),
      content_type = headers["content-type"], headers = headers,
      data = body:sub(hend + 4, nxt - 1),
    }
    if not parts[#parts].name then return bad("a part has no name") end
    pos = nxt + 2 + #delim
  end
end

return M
