-- One record per request. Optional arguments (wrk ... -- THREADS PATH PREFIX):
-- wrk's thread count (bench.py passes -t), the endpoint (default
-- /upload_health_data_v2) and the serial prefix (default WRK). Thread t of T
-- sends requests t+1, t+1+T, ...: no two requests of a run share a
-- (device_sn, ts) key, so the legacy path stores every one.
local threads, path, prefix = 1, "/upload_health_data_v2", "WRK"
local next_id = 0
function setup(thread)
    thread:set("tid", next_id)
    next_id = next_id + 1
end
local n
function init(args)
    threads = tonumber(args[1]) or threads
    path = args[2] or path
    prefix = args[3] or prefix
    n = (tid or 0) + 1 - threads
end
request = function()
    n = n + threads
    local body = string.format('{"data":{"deviceSn":"%s-%06d","heartRate":72,"bloodOxygen":98,"temperature":36.6,"timestamp":%d}}', prefix, n % 100000, 1750000000000 + n)
    return wrk.format("POST", path, {["Content-Type"]="application/json"}, body)
end
