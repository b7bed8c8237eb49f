-- Mixed load for bench/promote.py: riders reading pages and signing up, through the router.
--
--   wrk -t2 -c16 -d600s --timeout 60s --latency -s bench/promote_load.lua URL
--
-- Set by bench/promote.py in the environment:
--   PONY_HOST    Host header (the production domain with the router's port)
--   PONY_READS   space-separated paths to GET (event pages, list pages)
--   PONY_EVENTS  space-separated event paths; sign-ups POST to <event>/entry
--   PONY_COOKIE  a session cookie ("name=value") whose CSRF token is PONY_TOKEN
--   PONY_TOKEN   the CSRF token of that session
--   PONY_EVERY   one request in PONY_EVERY is a sign-up (default 10)
--   PONY_TAG     makes this run's e-mail addresses differ from other runs'
--
-- Reads go without a cookie (a rider who has not signed up: the cached page); sign-ups carry
-- the session, so a form opened before a promotion is sent after it. Every address is unique
-- (run tag, thread, counter). The summary is one line per status on stdout: "status <code> <n>".

local threads = {}
local next_id = 0

local function words(text)
  local list = {}
  for word in string.gmatch(text or "", "%S+") do
    table.insert(list, word)
  end
  return list
end

local function urlencode(text)
  return (string.gsub(text, "[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  host = os.getenv("PONY_HOST")
  reads = words(os.getenv("PONY_READS"))
  events = words(os.getenv("PONY_EVENTS"))
  cookie = os.getenv("PONY_COOKIE")
  token = urlencode(os.getenv("PONY_TOKEN") or "")
  every = tonumber(os.getenv("PONY_EVERY") or "10")
  tag = os.getenv("PONY_TAG") or "run"
  n = 0
  posts = 0
  statuses = {}
end

function request()
  n = n + 1
  if #events > 0 and n % every == 0 then
    posts = posts + 1
    local event = events[(posts % #events) + 1]
    local email = string.format("%s-t%d-%d@example.org", tag, id, posts)
    local body = "csrf_token=" .. token
      .. "&email=" .. urlencode(email)
      .. "&first_name=Load"
      .. "&last_name=" .. string.format("T%dN%d", id, posts)
      .. "&bike_type=single"
      .. "&info_answer=No"
    return wrk.format("POST", event .. "/entry", {
      ["Host"] = host,
      ["Cookie"] = cookie,
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, body)
  end
  return wrk.format("GET", reads[(n % #reads) + 1], { ["Host"] = host })
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  local sent = 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
    sent = sent + thread:get("posts")
  end
  for status, count in pairs(total) do
    io.write(string.format("status %d %d\n", status, count))
  end
  io.write(string.format("signups_sent %d\n", sent))
end
