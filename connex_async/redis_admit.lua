-- connex-async: every rate-limit decision of one process's batch, atomically, on Redis TIME.
--
-- One script (registered once, run by EVALSHA) so that all scopes of a request are decided in one
-- instant on one clock: Redis TIME is the only time any decision reads. Times are integer
-- microseconds of Redis TIME; durations in ARGV are microseconds too.
--
-- KEYS[1]   the namespace's epoch hash {id, born, run}: born = when this Redis's state begins
-- KEYS[2..] scope hashes {tat, cool} and circuit hashes {until, probe_at, probing, pause}
--
-- ARGV[1]   a fresh random id, used only if a new epoch begins
-- ARGV[2]   probe lease (us): how long one circuit probe may take before another may go
-- ARGV[3]   P = number of parameter records that follow, one per KEYS[2..P+1]:
--           "N b T m s" (count, burst, period, margin, slack; us) of a scope, or "0" for a circuit
-- then ops, one argument each: a letter and its numbers, separated by spaces (k = index into KEYS;
-- one string per op, because every argument costs the client an encoding and a length prefix):
--   A n c k1 f1 .. kn fn   admit: all n scopes (phase fraction f in 0..2^20 for a new scope) and
--                          circuit c (0 = none) in one instant, or none of them
--   C k d                  cool scope k down for d us (extends, never shortens)
--   S k d                  charge scope k a late write of d us (its next admissions move back)
--   O c d p                open circuit c for d us; probe after p us (-1: never)
--   X c                    close circuit c (its probe was answered)
--   R c                    release circuit c's probe (it got no answer)
--   Z                      the operator declares that nothing was sent for a window: the epoch
--                          begins without holding the scopes (`connex-async fleet init`)
--
-- Returns one string of space-separated integers (one reply line to parse, not one per number):
-- epoch_state, then per A op: status, value, blocking k.
--   epoch_state 0 = same epoch, 1 = a new epoch began in this call (Redis restarted or failed over)
--   status 0 admitted, 1 admitted as the circuit's probe, 2 wait value us for scope k,
--          3 circuit open for value us more
--
-- GCRA is the bucket of rate_limit.py: emission interval e = (T + m + s) / (N + 1 - b), tolerance
-- tau = (b - 1) e + s. A scope admits at `now` iff tat - tau <= now; it then books
-- tat = max(tat, now) + e. Any N + 1 admissions are therefore >= T + m apart (rate_limit.py).
-- A scope whose tat has passed admits exactly as a new one would, so its hash expires one window
-- after tat (not at tat: a scope re-created at every admission would take a new random phase).
--
-- The epoch: Redis keeps state in memory and replicates asynchronously, so a restart or a
-- failover can forget admissions that the venue still counts. The epoch hash records the run_id
-- of the server that holds it; when it is missing or names another run_id, a new epoch begins
-- and every scope waits one full window (T + m) from its birth before admitting.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function fmt(x) return string.format('%.0f', x) end

local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local epoch = redis.call('HMGET', KEYS[1], 'born', 'run')
local born = tonumber(epoch[1])
local new_epoch = 0
if born == nil or epoch[2] ~= run then
  born = now
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'born', fmt(born), 'run', run)
  new_epoch = 1
end

local function words(text)
  local w = {}
  for part in string.gmatch(text, '%S+') do
    w[#w + 1] = tonumber(part) or part
  end
  return w
end

local lease = tonumber(ARGV[2])
local nparams = tonumber(ARGV[3])
local params = {}
for j = 1, nparams do
  local w = words(ARGV[3 + j])
  local n, b, T, m, s = w[1], w[2], w[3], w[4], w[5]
  if n > 0 then
    local e = (T + m + s) / (n + 1 - b)
    params[j + 1] = {e = e, tau = (b - 1) * e + s, window = T + m}
  end
end

local function expire_at(key, when_us)
  redis.call('PEXPIREAT', key, math.floor(when_us / 1000) + 1)
end

local out = {new_epoch}

local function admit(w)
  local n, c = w[2], w[3]
  local probe = false
  if c > 0 then
    local ck = KEYS[c]
    local st = redis.call('HMGET', ck, 'until', 'probe_at', 'probing')
    local till = tonumber(st[1])
    if till and till > now then
      if tonumber(st[2]) <= now and (tonumber(st[3]) or 0) <= now then
        probe = true
      else
        out[#out + 1] = 3; out[#out + 1] = fmt(till - now); out[#out + 1] = c
        return
      end
    end
  end
  local tats = {}
  local worst, worst_k = 0, 0
  for q = 1, n do
    local k = w[2 + 2 * q]
    local p = params[k]
    local st = redis.call('HMGET', KEYS[k], 'tat', 'cool')
    local tat, cool = tonumber(st[1]), tonumber(st[2]) or 0
    tats[q] = tat
    local ready = math.max(born + p.window, cool, (tat or 0) - p.tau)
    if ready > now and ready - now > worst then
      worst, worst_k = ready - now, k
    end
  end
  if worst > 0 then
    out[#out + 1] = 2; out[#out + 1] = fmt(math.ceil(worst)); out[#out + 1] = worst_k
    return
  end
  for q = 1, n do
    local k = w[2 + 2 * q]
    local p = params[k]
    local tat = math.max(tats[q] or 0, now) + p.e
    if tats[q] == nil then
      -- A new scope's first admission stays immediate; its schedule then shifts by a random part
      -- of an interval, so that keys created together do not refill (and reach the venue) together.
      tat = tat + p.e * w[3 + 2 * q] / 1048576
    end
    redis.call('HSET', KEYS[k], 'tat', fmt(tat))
    local cool = tonumber(redis.call('HGET', KEYS[k], 'cool')) or 0
    expire_at(KEYS[k], math.max(tat + p.window, cool))
  end
  if probe then
    redis.call('HSET', KEYS[c], 'probing', fmt(now + lease))
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  out[#out + 1] = 0; out[#out + 1] = 0
end

local function cool(w)
  local k, d = w[2], w[3]
  local st = redis.call('HMGET', KEYS[k], 'tat', 'cool')
  local till = math.max(tonumber(st[2]) or 0, now + d)
  redis.call('HSET', KEYS[k], 'cool', fmt(till))
  expire_at(KEYS[k], math.max(till, tonumber(st[1]) or 0))
end

local function charge(w)
  local k, d = w[2], w[3]
  local st = redis.call('HMGET', KEYS[k], 'tat', 'cool')
  -- From now on, not from a tat in the past: a charge must not be swallowed by idle time.
  local tat = math.max(tonumber(st[1]) or 0, now) + d
  redis.call('HSET', KEYS[k], 'tat', fmt(tat))
  expire_at(KEYS[k], math.max(tat, tonumber(st[2]) or 0))
end

local function open_circuit(w)
  local c, d, p = w[2], w[3], w[4]
  local ck = KEYS[c]
  local st = redis.call('HMGET', ck, 'until', 'probing', 'pause')
  local till, probing, pause = tonumber(st[1]) or 0, tonumber(st[2]) or 0, tonumber(st[3])
  if till > now and probing <= now then
    -- More ban signals from requests already in flight: the same opening, maybe longer.
    till = math.max(till, now + d)
    redis.call('HSET', ck, 'until', fmt(till))
  else
    if p >= 0 and pause and pause >= 0 and probing > now then
      p = math.min(math.max(p, 2 * pause), d)  -- the probe was refused: probe less often
    end
    till = now + d
    local probe_at = till
    if p >= 0 then probe_at = now + p end
    redis.call('HSET', ck, 'until', fmt(till), 'probe_at', fmt(probe_at), 'probing', '0', 'pause', fmt(p))
  end
  expire_at(ck, till)
end

local function close_circuit(w)
  redis.call('DEL', KEYS[w[2]])
end

local function release_probe(w)
  local c = w[2]
  if redis.call('EXISTS', KEYS[c]) == 1 then
    redis.call('HSET', KEYS[c], 'probing', '0')
  end
end

local function cold_start()
  born = 0
  redis.call('HSET', KEYS[1], 'born', '0')
end

local ops = {Z = cold_start, A = admit, C = cool, S = charge, O = open_circuit, X = close_circuit, R = release_probe}
for i = 4 + nparams, #ARGV do
  local w = words(ARGV[i])
  local op = ops[w[1]]
  if op == nil then
    return redis.error_reply('connex-async: unknown op ' .. tostring(w[1]))
  end
  op(w)
end
return table.concat(out, ' ')
