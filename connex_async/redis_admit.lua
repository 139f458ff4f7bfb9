-- connex-async: every rate-limit decision of one process's batch, atomically, on Redis TIME.
--
-- One script (registered once, run by EVALSHA) so that all scopes of a request are decided in one
-- instant on one clock: Redis TIME is the only time any decision reads. Times are integer
-- microseconds of Redis TIME; durations in ARGV are microseconds too.
--
-- KEYS[1]   the namespace's epoch hash {id, born, run}: born = when this Redis's state begins
-- KEYS[2..] scope hashes {tat, cool, me, m1, m0, mp} and circuit hashes {until, probe_at, probing, pause}
--
-- ARGV[1]   a fresh random id, used only if a new epoch begins
-- ARGV[2]   probe lease (us): how long one circuit probe may take before another may go
-- ARGV[3]   P = number of parameter records that follow, one per KEYS[2..P+1]:
--           "N b T m s" (count, burst, period, margin, slack; us) of a scope, or "0" for a circuit;
--           m is the sending process's margin (its own round trips'), the widest in use wins
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
-- The margin M a scope is booked with is the widest any process sent in the last 2T to 4T, with an
-- admission or with a refused one: m1 is the widest sent in the current period of 2T (number mp),
-- m0 in the one before. A process on a bad
-- route thus spaces the budget it shares with processes on good routes; 2T covers every pair of
-- admissions the bound concerns (T + M apart at most, margins being capped at T). `me` is the
-- margin tat was booked with: when M is wider, tat moves back by N (e(M) - e(me)), so that any N + 1
-- admissions ending after the widening are T + M apart (limits.py has the derivation), unless the
-- scope has been idle for a window.
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
  if w[1] > 0 then
    params[j + 1] = {n = w[1], b = w[2], T = w[3], m = w[4], s = w[5]}
  end
end

-- The margin to book a scope with (see above), its emission interval and tolerance, the margin
-- state to store, and tat moved back if the margin widened.
local function booking(p, st)
  local tat, me = tonumber(st[1]), tonumber(st[3])
  local period = math.floor(now / (2 * p.T))
  local m1, m0, mp = tonumber(st[4]) or 0, tonumber(st[5]) or 0, tonumber(st[6]) or period
  if mp ~= period then
    if mp == period - 1 then m0 = m1 else m0 = 0 end
    m1 = 0
  end
  m1 = math.max(m1, p.m)
  -- [widest wins]
  local M = math.max(m1, m0)
  -- [/widest wins]
  local n1 = p.n + 1 - p.b
  local e = (p.T + M + p.s) / n1
  if tat and me and M > me and tat > now - (p.T + M) then
    tat = tat + p.n * (e - (p.T + me + p.s) / n1)
  end
  local changed = M ~= me or m1 ~= tonumber(st[4]) or period ~= tonumber(st[6])
  return {e = e, tau = (p.b - 1) * e + p.s, window = p.T + M, tat = tat, M = M, m1 = m1, m0 = m0, mp = period,
          changed = changed}
end

local function expire_at(key, when_us)
  redis.call('PEXPIREAT', key, math.floor(when_us / 1000) + 1)
end

-- A refused admission's margin still counts: its process waits with requests in flight (the one
-- whose answer widened the margin among them), so the widening and its push are stored now, not
-- at an admission that may be long in coming.
local function remember(key, bk, cool)
  if bk.tat then
    redis.call('HSET', key, 'tat', fmt(bk.tat))
  end
  redis.call('HSET', key, 'me', fmt(bk.M), 'm1', fmt(bk.m1), 'm0', fmt(bk.m0), 'mp', fmt(bk.mp))
  expire_at(key, math.max((bk.tat or now) + bk.window, cool))
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
  local books, cools = {}, {}
  local worst, worst_k = 0, 0
  for q = 1, n do
    local k = w[2 + 2 * q]
    local st = redis.call('HMGET', KEYS[k], 'tat', 'cool', 'me', 'm1', 'm0', 'mp')
    local bk = booking(params[k], st)
    books[q], cools[q] = bk, tonumber(st[2]) or 0
    local ready = math.max(born + bk.window, cools[q], (bk.tat or 0) - bk.tau)
    if ready > now and ready - now > worst then
      worst, worst_k = ready - now, k
    end
  end
  if worst > 0 then
    for q = 1, n do
      if books[q].changed then
        remember(KEYS[w[2 + 2 * q]], books[q], cools[q])
      end
    end
    out[#out + 1] = 2; out[#out + 1] = fmt(math.ceil(worst)); out[#out + 1] = worst_k
    return
  end
  for q = 1, n do
    local k = w[2 + 2 * q]
    local bk = books[q]
    local tat = math.max(bk.tat or 0, now) + bk.e
    if bk.tat == nil then
      -- A new scope's first admission stays immediate; its schedule then shifts by a random part
      -- of an interval, so that keys created together do not refill (and reach the venue) together.
      tat = tat + bk.e * w[3 + 2 * q] / 1048576
    end
    redis.call('HSET', KEYS[k], 'tat', fmt(tat), 'me', fmt(bk.M), 'm1', fmt(bk.m1), 'm0', fmt(bk.m0), 'mp', fmt(bk.mp))
    local cool = tonumber(redis.call('HGET', KEYS[k], 'cool')) or 0
    expire_at(KEYS[k], math.max(tat + bk.window, cool))
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
