-- wrk script of bench/api_bench.py.
--
-- BENCH_API_KEY        the API key, sent as "Authorization: Bearer <key>"
-- BENCH_IDS_FILE       optional: one job id a line; each request then GETs
--                      /v1/jobs/<a random id of the file> instead of wrk's URL
--
-- done() prints one line "BENCH_JSON {...}" with the counts and latency
-- percentiles (microseconds) that api_bench.py reads.

local key = os.getenv("BENCH_API_KEY") or ""
wrk.headers["Authorization"] = "Bearer " .. key

local ids_file = os.getenv("BENCH_IDS_FILE") or ""
local ids = nil
if ids_file ~= "" then
    ids = {}
    for line in io.lines(ids_file) do
        if line ~= "" then ids[#ids + 1] = line end
    end
end

local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("seed", counter)
end

function init(args)
    math.randomseed(os.time() * 1000 + (seed or 0))
end

if ids ~= nil then
    request = function()
        return wrk.format(nil, "/v1/jobs/" .. ids[math.random(#ids)])
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
        .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
        .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, latency.mean))
end
