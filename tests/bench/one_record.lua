local n = 0
request = function()
    n = n + 1
    local body = string.format('{"data":{"deviceSn":"WRK-%06d","heartRate":72,"bloodOxygen":98,"temperature":36.6,"timestamp":%d}}', n % 100000, 1750000000000 + n)
    return wrk.format("POST", "/upload_health_data_v2", {["Content-Type"]="application/json"}, body)
end
