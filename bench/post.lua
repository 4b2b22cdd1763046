-- wrk script: POST the JSON body in the file named by $BENCH_BODY, as a TF Serving client does.
--   BENCH_BODY=DIR/samples/request.json wrk -t1 -c8 -d10s --latency -s bench/post.lua \
--     http://127.0.0.1:8501/v1/models/mnist:predict
-- BENCH_CONTENT_TYPE overrides the JSON content type (the gateway bench sends multipart/form-data).
-- BENCH_API_KEY, when set and not empty, is sent as x-api-key (bench/keys_bench.py).
-- wrk itself counts non-2xx answers ("Non-2xx or 3xx responses") and socket errors.
local path = os.getenv("BENCH_BODY")
if path == nil or path == "" then
  error("post.lua: set BENCH_BODY to the file holding the request body")
end
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()
if os.getenv("BENCH_CONTENT_TYPE") == nil then body = body:gsub("%s+$", "") end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local key = os.getenv("BENCH_API_KEY")
if key ~= nil and key ~= "" then wrk.headers["x-api-key"] = key end
