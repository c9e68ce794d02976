-- wrk script: each thread replays its own partition of pre-signed raw requests, each exactly once.
-- A thread that runs out starts over; those repeats are refused as replays and show up as non-2xx.
local counter = 0
local reqs = {}
local idx = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local f = assert(io.open(args[1] .. "." .. tid, "rb"))
  local data = f:read("*a")
  f:close()
  for rec in string.gmatch(data, "([^%z]+)") do
    reqs[#reqs + 1] = rec
  end
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end
