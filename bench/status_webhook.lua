-- Kommo status-change webhooks in their wire format: every request a new change (fresh
-- last_modified) to one of 200 leads, so deliveries are stored and jobs coalesce per lead.
local counter = 0
local account = os.getenv("BENCH_ACCOUNT") or "29085424"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

request = function()
  counter = counter + 1
  local lead = 15000000 + (counter % 200)
  local stamp = 1732540000 + counter
  local body = "leads%5Bstatus%5D%5B0%5D%5Bid%5D=" .. lead ..
    "&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=" .. (67548600 + counter % 5) ..
    "&leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=67548607" ..
    "&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=7654321" ..
    "&leads%5Bstatus%5D%5B0%5D%5Blast_modified%5D=" .. stamp ..
    "&leads%5Bstatus%5D%5B0%5D%5Baccount_id%5D=" .. account ..
    "&account%5Bsubdomain%5D=acme&account%5Bid%5D=" .. account
  return wrk.format(nil, nil, nil, body)
end

-- wrk threads share no state: each starts its counter far from the others'.
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  counter = math.random(1, 1000000000)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
