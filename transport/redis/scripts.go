package redis

import (
	"fmt"

	goredis "github.com/redis/go-redis/v9"
)

// The stream subscriptions' work on entries they may no longer own runs
// in Lua, so that checking the owner and acting on the entry are one
// atomic step: a consumer that lost an entry to another one (after a
// connection loss longer than ClaimIdle) must not take it back while the
// other one processes it.

// ownedScript acts on the entries ARGV[5:] of stream KEYS[1] that group
// ARGV[1] has pending for consumer ARGV[2], as ARGV[3] says:
//
//	touch    reset their idle time (XCLAIM JUSTID, which leaves the
//	         delivery counter alone), so nobody claims them; returns
//	         the ids touched
//	claim    deliver them again (XCLAIM, which counts a delivery);
//	         returns {id, fields, deliveries} for each
//	release  make them idle for ARGV[4] ms, so that any consumer of the
//	         group claims them at its next XAUTOCLAIM; then remove the
//	         consumer if it holds nothing
//
// Entries the consumer does not own (acknowledged, or claimed by another)
// are left alone.
var ownedScript = goredis.NewScript(`
local stream, group, consumer, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 5, #ARGV do
	local id = ARGV[i]
	local p = redis.call('XPENDING', stream, group, id, id, 1)[1]
	if p and p[2] == consumer then
		if mode == 'claim' then
			local e = redis.call('XCLAIM', stream, group, consumer, 0, id)[1]
			if e then
				out[#out + 1] = {e[1], e[2], p[4] + 1}
			end
		elseif mode == 'release' then
			redis.call('XCLAIM', stream, group, consumer, 0, id, 'IDLE', ARGV[4], 'JUSTID')
		else
			redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
			out[#out + 1] = id
		end
	end
end
if mode == 'release' and redis.call('XPENDING', stream, group, '-', '+', 1, consumer)[1] == nil then
	redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
end
return out
`)

// autoclaimScript claims for consumer ARGV[2] of group ARGV[1] the entries
// of stream KEYS[1] idle for at least ARGV[3] ms, from cursor ARGV[4], at
// most ARGV[5] of them, with each entry's delivery count (XAUTOCLAIM does
// not return it). It returns {next cursor, {{id, fields, deliveries}...}}.
var autoclaimScript = goredis.NewScript(`
local stream, group = KEYS[1], ARGV[1]
local r = redis.call('XAUTOCLAIM', stream, group, ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, e in ipairs(r[2]) do
	if e then -- a deleted entry is nil in Redis 6.2
		local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)[1]
		local n = 1
		if p then n = p[4] end
		out[#out + 1] = {e[1], e[2], n}
	end
end
return {r[1], out}
`)

// sweepScript removes the consumers of group ARGV[1] of stream KEYS[1]
// that hold no entries and have been idle at least ARGV[2] ms. A
// consumer with pending entries is never removed: XGROUP DELCONSUMER
// would drop its entries from the group. It returns the names removed.
var sweepScript = goredis.NewScript(`
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
	local info = {}
	for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
	if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) then
		redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
		removed[#removed + 1] = info['name']
	end
end
return removed
`)

// scriptEntry is an entry a script returns.
type scriptEntry struct {
	id         string
	values     map[string]any
	deliveries int64
}

// parseEntries parses the {id, fields, deliveries} triples of a script's
// reply.
func parseEntries(v any) ([]scriptEntry, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("redis: unexpected script reply %T", v)
	}
	entries := make([]scriptEntry, 0, len(list))
	for _, item := range list {
		t, ok := item.([]any)
		if !ok || len(t) != 3 {
			return nil, fmt.Errorf("redis: unexpected entry in script reply: %v", item)
		}
		id, _ := t[0].(string)
		flat, _ := t[1].([]any)
		n, _ := t[2].(int64)
		values := make(map[string]any, len(flat)/2)
		for i := 0; i+1 < len(flat); i += 2 {
			k, _ := flat[i].(string)
			values[k] = flat[i+1]
		}
		entries = append(entries, scriptEntry{id: id, values: values, deliveries: n})
	}
	return entries, nil
}
