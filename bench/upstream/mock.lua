-- Fixed OpenAI- and Anthropic-shaped replies for the benchmark upstream (bench/upstream/upstream.conf.tmpl).
-- Per-request overrides: query ?chunks=&delay_ms=&latency_ms=&dims= or headers X-Bench-Chunks, X-Bench-Delay-Ms,
-- X-Bench-Latency-Ms, X-Bench-Dims; otherwise the location's defaults ($bench_chunks, $bench_delay_ms, ...).
local M = {}

-- Literal JSON: Debian's Lua module ships without cjson, and fixed bytes are what a benchmark upstream wants.
local WORD = "tok "
local CHAT = '{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench",'
  .. '"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",'
  .. '"content":"Hello! I am a benchmark upstream, answering at once."}}],'
  .. '"usage":{"prompt_tokens":12,"completion_tokens":12,"total_tokens":24}}'
local MESSAGE = '{"id":"msg_bench","type":"message","role":"assistant","model":"claude-bench",'
  .. '"content":[{"type":"text","text":"Hello! I am a benchmark upstream, answering at once."}],'
  .. '"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":12}}'
local MODELS = '{"object":"list","data":[{"id":"gpt-bench","object":"model","created":1700000000,'
  .. '"owned_by":"bench"},{"id":"claude-bench","object":"model","created":1700000000,"owned_by":"bench"}]}'
local CHUNK_HEAD = 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
  .. '"model":"gpt-bench","choices":[{"index":0,"delta":{'
local ANTHROPIC_START = 'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_bench",'
  .. '"type":"message","role":"assistant","model":"claude-bench","content":[],"stop_reason":null,'
  .. '"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}\n\n'
  .. 'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
  .. '"content_block":{"type":"text","text":""}}\n\n'
local ANTHROPIC_DELTA = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
  .. '"delta":{"type":"text_delta","text":"' .. WORD .. '"}}\n\n'
local ANTHROPIC_END = 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
  .. 'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
  .. '"stop_sequence":null},"usage":{"output_tokens":%d}}\n\n'
  .. 'event: message_stop\ndata: {"type":"message_stop"}\n\n'
local embeddings_cache = {}

local function knob(args, headers, query_name, header_name, var_name)
  local value = args[query_name] or headers[header_name] or ngx.var[var_name]
  return tonumber(value) or 0
end

local function embeddings(dims)
  local cached = embeddings_cache[dims]
  if cached then return cached end
  local vector = {}
  for i = 1, dims do vector[i] = string.format("%.9f", ((i * 7919) % 2000 - 1000) / 1000) end
  cached = '{"object":"list","data":[{"object":"embedding","index":0,"embedding":['
    .. table.concat(vector, ",") .. ']}],"model":"text-embedding-bench",'
    .. '"usage":{"prompt_tokens":8,"total_tokens":8}}'
  embeddings_cache[dims] = cached
  return cached
end

local function openai_stream(chunks, delay)
  ngx.header["Content-Type"] = "text/event-stream"
  ngx.header["Cache-Control"] = "no-cache"
  for i = 1, chunks do
    local delta = i == 1 and '"role":"assistant","content":"' .. WORD .. '"' or '"content":"' .. WORD .. '"'
    local finish = i == chunks and '"stop"' or "null"
    ngx.print(CHUNK_HEAD, delta, '},"finish_reason":', finish, '}]}\n\n')
    ngx.flush(true)
    if delay > 0 and i < chunks then ngx.sleep(delay) end
  end
  ngx.print("data: [DONE]\n\n")
end

local function anthropic_stream(chunks, delay)
  ngx.header["Content-Type"] = "text/event-stream"
  ngx.header["Cache-Control"] = "no-cache"
  ngx.print(ANTHROPIC_START)
  for i = 1, chunks do
    ngx.print(ANTHROPIC_DELTA)
    ngx.flush(true)
    if delay > 0 and i < chunks then ngx.sleep(delay) end
  end
  ngx.print(string.format(ANTHROPIC_END, chunks))
end

local function json(body)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(body)
end

function M.handle()
  local uri = ngx.var.uri
  local args = ngx.req.get_uri_args()
  local headers = ngx.req.get_headers()
  local latency = knob(args, headers, "latency_ms", "x-bench-latency-ms", "bench_latency_ms")
  if latency > 0 then ngx.sleep(latency / 1000) end
  if ngx.req.get_method() == "GET" then
    if uri:sub(-7) == "/models" then return json(MODELS) end
    return json('{"status":"ok"}')
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  local stream = body:find('"stream"%s*:%s*true') ~= nil
  local chunks = knob(args, headers, "chunks", "x-bench-chunks", "bench_chunks")
  local delay = knob(args, headers, "delay_ms", "x-bench-delay-ms", "bench_delay_ms") / 1000
  if uri:sub(-17) == "/chat/completions" then
    if stream then return openai_stream(chunks, delay) end
    return json(CHAT)
  elseif uri:sub(-9) == "/messages" then
    if stream then return anthropic_stream(chunks, delay) end
    return json(MESSAGE)
  elseif uri:sub(-11) == "/embeddings" then
    return json(embeddings(knob(args, headers, "dims", "x-bench-dims", "bench_dims")))
  end
  ngx.status = 404
  return json('{"error":{"message":"bench upstream: unknown path","type":"not_found"}}')
end

-- A deployment failing `percent` % of requests at random (bench/routing_bench.py, availability): half of those are
-- answered 503 at once, half closed without an answer (nginx's 444: the client sees the connection drop).
math.randomseed(ngx.now() * 1000)
function M.flaky(percent)
  if math.random() * 100 < percent then
    if math.random() < 0.5 then
      ngx.status = 503
      return json('{"error":{"message":"bench upstream: failing at random","type":"server_error"}}')
    end
    return ngx.exit(444)
  end
  return M.handle()
end

return M
