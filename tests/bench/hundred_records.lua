-- 100 camelCase records with a batchId to /upload_health_data_batch (the old
-- stress test's body). Optional arguments (wrk ... -- THREADS PREFIX): wrk's
-- thread count and the serial prefix (default STRESS). Thread t of T sends
-- requests t+1, t+1+T, ...: no two records of a run share a (device_sn, ts)
-- key, so the legacy path stores every one.
local threads, prefix = 1, "STRESS"
local next_id = 0
function setup(thread)
    thread:set("tid", next_id)
    next_id = next_id + 1
end
local n
function init(args)
    threads = tonumber(args[1]) or threads
    prefix = args[2] or prefix
    n = (tid or 0) + 1 - threads
end
request = function()
    n = n + threads
    local recs = {}
    for i = 1, 100 do
        recs[i] = string.format('{"deviceSn":"%s-%05d","heartRate":%d,"bloodOxygen":98,"temperature":36.5,"pressureHigh":120,"pressureLow":80,"step":%d,"timestamp":%d}', prefix, (n * 7 + i) % 10000, 60 + i % 40, n, 1750000000000 + n * 1000 + i)
    end
    local body = '{"batchId":"' .. prefix .. '-b' .. n .. '","data":[' .. table.concat(recs, ",") .. ']}'
    return wrk.format("POST", "/upload_health_data_batch", {["Content-Type"]="application/json"}, body)
end
