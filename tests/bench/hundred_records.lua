local n = 0
local parts = {}
request = function()
    n = n + 1
    local recs = {}
    for i = 1, 100 do
        recs[i] = string.format('{"deviceSn":"STRESS-%05d","heartRate":%d,"bloodOxygen":98,"temperature":36.5,"pressureHigh":120,"pressureLow":80,"step":%d,"timestamp":%d}', (n * 7 + i) % 10000, 60 + i % 40, n, 1750000000000 + n * 1000 + i)
    end
    local body = '{"batchId":"b' .. n .. '","data":[' .. table.concat(recs, ",") .. ']}'
    return wrk.format("POST", "/upload_health_data_batch", {["Content-Type"]="application/json"}, body)
end
