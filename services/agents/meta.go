package agents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/kvwatch"
	"github.com/kanade-go/kanade/services/api"
)

// Entry is one metadata pair.
type Entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// AgentMeta is the value of a PC's key in agent_meta.
type AgentMeta struct {
	Entries []Entry `json:"entries"`
}

// NormalizeMeta trims keys and values, drops entries with an empty key,
// and keeps one entry per key: the last value, at the key's first
// position.
func NormalizeMeta(in []Entry) []Entry {
	out := []Entry{}
	at := map[string]int{}
	for _, e := range in {
		k, v := strings.TrimSpace(e.Key), strings.TrimSpace(e.Value)
		if k == "" {
			continue
		}
		if i, ok := at[k]; ok {
			out[i].Value = v
			continue
		}
		at[k] = len(out)
		out = append(out, Entry{k, v})
	}
	return out
}

func encodeMeta(m AgentMeta) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(m)
	return bytes.TrimSpace(b.Bytes())
}

// Meta mirrors KV agent_meta in memory (a watcher keeps it current): the
// list's metadata filters and columns read it instead of a SQLite copy.
type Meta struct {
	KV jetstream.KeyValue // nil: the bucket is missing

	mu sync.RWMutex
	m  map[string][]Entry
}

// WatchMeta mirrors kv until ctx ends; it returns once the current values
// are in. wg tracks the watcher.
func WatchMeta(ctx, bg context.Context, kv jetstream.KeyValue, wg *sync.WaitGroup, log *slog.Logger) (*Meta, error) {
	mt := &Meta{KV: kv, m: map[string][]Entry{}}
	if kv == nil {
		return mt, nil
	}
	if err := kvwatch.Follow(ctx, bg, kv, wg, log, func(e jetstream.KeyValueEntry) { mt.apply(e, log) }); err != nil {
		return nil, err
	}
	return mt, nil
}

func (mt *Meta) apply(e jetstream.KeyValueEntry, log *slog.Logger) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(mt.m, e.Key())
		return
	}
	var v AgentMeta
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		log.Warn("agent_meta value does not decode; ignored", "pc_id", e.Key(), "err", err)
		delete(mt.m, e.Key())
		return
	}
	mt.m[e.Key()] = NormalizeMeta(v.Entries)
}

// set records a write made here at once, before the watcher delivers it.
func (mt *Meta) set(pc string, entries []Entry) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	if len(entries) == 0 {
		delete(mt.m, pc)
		return
	}
	mt.m[pc] = entries
}

// Get is a PC's entries sorted by key (nil when none).
func (mt *Meta) Get(pc string) []Entry {
	if mt == nil {
		return nil
	}
	mt.mu.RLock()
	e := slices.Clone(mt.m[pc])
	mt.mu.RUnlock()
	if len(e) == 0 {
		return nil
	}
	slices.SortFunc(e, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return e
}

// Keys are the distinct metadata keys, sorted.
func (mt *Meta) Keys() []string {
	set := map[string]bool{}
	if mt != nil {
		mt.mu.RLock()
		for _, es := range mt.m {
			for _, e := range es {
				set[e.Key] = true
			}
		}
		mt.mu.RUnlock()
	}
	return slices.Sorted(maps.Keys(set))
}

// Values maps each PC that has key to its value, lower-cased (the
// meta:<key> sort is case-insensitive).
func (mt *Meta) Values(key string) map[string]string {
	out := map[string]string{}
	if mt == nil {
		return out
	}
	mt.mu.RLock()
	defer mt.mu.RUnlock()
	for pc, es := range mt.m {
		for _, e := range es {
			if e.Key == key {
				out[pc] = strings.ToLower(e.Value)
				break
			}
		}
	}
	return out
}

// Bulk is the entries of the listed PCs; PCs with none are left out.
func (mt *Meta) Bulk(pcs []string) map[string][]Entry {
	out := map[string][]Entry{}
	for _, pc := range pcs {
		if e := mt.Get(pc); e != nil {
			out[pc] = e
		}
	}
	return out
}

// Matching is the set of PCs whose metadata meets every condition and,
// when anyValue is set, has a value containing it. When a PC without
// metadata would match too (only "absent" conditions), the answer is the
// complement: the PCs that do not match, with complement true.
func (mt *Meta) Matching(conds []MetaCond, anyValue string) (pcs []string, complement bool) {
	out := []string{}
	if mt == nil {
		return out, matchAll(nil, conds, anyValue)
	}
	complement = matchAll(nil, conds, anyValue)
	mt.mu.RLock()
	defer mt.mu.RUnlock()
	for pc, es := range mt.m {
		if matchAll(es, conds, anyValue) != complement {
			out = append(out, pc)
		}
	}
	return out, complement
}

func matchAll(es []Entry, conds []MetaCond, anyValue string) bool {
	for _, c := range conds {
		if !c.matches(es) {
			return false
		}
	}
	if anyValue != "" {
		return slices.ContainsFunc(es, func(e Entry) bool { return strings.Contains(e.Value, anyValue) })
	}
	return true
}

// errBucket is upstream's 503 for a missing agent_meta bucket.
func (mt *Meta) bucket() error {
	if mt == nil || mt.KV == nil {
		return api.Unavailable("agent_meta KV bucket unavailable: bucket not found")
	}
	return nil
}

// read returns a PC's stored metadata (normalised) and its revision.
func (mt *Meta) read(ctx context.Context, pc string) (AgentMeta, uint64, error) {
	e, err := mt.KV.Get(ctx, pc)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return AgentMeta{Entries: []Entry{}}, 0, nil
	}
	if err != nil {
		return AgentMeta{}, 0, api.Errorf(http.StatusInternalServerError, "read agent_meta for %s: %v", pc, err)
	}
	var v AgentMeta
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return AgentMeta{}, 0, api.Errorf(http.StatusInternalServerError, "decode agent_meta for %s: %v", pc, err)
	}
	v.Entries = NormalizeMeta(v.Entries)
	return v, e.Revision(), nil
}

// Read is GET /api/agents/{pc_id}/meta.
func (mt *Meta) Read(ctx context.Context, pc string) (AgentMeta, error) {
	if err := mt.bucket(); err != nil {
		return AgentMeta{}, err
	}
	v, _, err := mt.read(ctx, pc)
	return v, err
}

// Put replaces a PC's metadata (a blind put of the normalised value).
func (mt *Meta) Put(ctx context.Context, pc string, entries []Entry) (AgentMeta, error) {
	if err := mt.bucket(); err != nil {
		return AgentMeta{}, err
	}
	v := AgentMeta{Entries: NormalizeMeta(entries)}
	if _, err := mt.KV.Put(ctx, pc, encodeMeta(v)); err != nil {
		return AgentMeta{}, api.Errorf(http.StatusInternalServerError, "write agent_meta for %s: %v", pc, err)
	}
	mt.set(pc, v.Entries)
	return v, nil
}

// KeyReply answers a one-key change.
type KeyReply struct {
	Meta    AgentMeta `json:"meta"`
	Changed bool      `json:"changed"`
}

// SetKey upserts one key by compare-and-set; an unchanged value does not
// write.
func (mt *Meta) SetKey(ctx context.Context, pc, key, value string) (KeyReply, error) {
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if key == "" {
		return KeyReply{}, api.BadRequest("metadata key must not be empty")
	}
	return mt.modify(ctx, pc, func(es []Entry) ([]Entry, bool) {
		for i, e := range es {
			if e.Key == key {
				if e.Value == value {
					return es, false
				}
				es = slices.Clone(es)
				es[i].Value = value
				return es, true
			}
		}
		return append(slices.Clone(es), Entry{key, value}), true
	})
}

// RemoveKey deletes one key by compare-and-set.
func (mt *Meta) RemoveKey(ctx context.Context, pc, key string) (KeyReply, error) {
	key = strings.TrimSpace(key)
	return mt.modify(ctx, pc, func(es []Entry) ([]Entry, bool) {
		i := slices.IndexFunc(es, func(e Entry) bool { return e.Key == key })
		if i < 0 {
			return es, false
		}
		return slices.Delete(slices.Clone(es), i, i+1), true
	})
}

func (mt *Meta) modify(ctx context.Context, pc string, change func([]Entry) ([]Entry, bool)) (KeyReply, error) {
	if err := mt.bucket(); err != nil {
		return KeyReply{}, err
	}
	var last error
	for attempt := 1; attempt <= 32; attempt++ {
		cur, rev, err := mt.read(ctx, pc)
		if err != nil {
			return KeyReply{}, err
		}
		next, changed := change(cur.Entries)
		if !changed {
			return KeyReply{Meta: cur}, nil
		}
		v := AgentMeta{Entries: next}
		if rev == 0 {
			_, err = mt.KV.Create(ctx, pc, encodeMeta(v))
		} else {
			_, err = mt.KV.Update(ctx, pc, encodeMeta(v), rev)
		}
		if err == nil {
			mt.set(pc, next)
			return KeyReply{Meta: v, Changed: true}, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return KeyReply{}, ctx.Err()
		case <-time.After(min(time.Duration(attempt)*2*time.Millisecond, 25*time.Millisecond)):
		}
	}
	return KeyReply{}, api.Errorf(http.StatusInternalServerError, "update agent_meta for %s: %v", pc, last)
}
