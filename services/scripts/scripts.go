// Package scripts is the script lifecycle agents gate on: KV script_status
// holds, per Command id (the job id), the raw bytes ACTIVE or REVOKED, and an
// agent skips a REVOKED id with exit 126. Revoke and unrevoke write it as
// upstream does (a put either way, never a delete). The package also serves
// the JSON Schema of a job manifest for editors.
package scripts

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// ManifestSchema is the JSON Schema (draft 2020-12) of a job manifest as
// this backend reads it; unknown keys are kept, so it does not forbid them.
//
//go:embed manifest.schema.json
var ManifestSchema []byte

// Status reads and writes script_status.
type Status struct {
	JS jetstream.JetStream

	mu sync.Mutex
	kv jetstream.KeyValue
}

// bucket opens script_status, again on each call until it exists.
func (s *Status) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := s.JS.KeyValue(ctx, wire.BucketScriptStatus)
	if err != nil {
		return nil, err
	}
	s.kv = kv
	return kv, nil
}

// All is every key of script_status with its value read as text; {} when
// the bucket is missing, as upstream.
func (s *Status) All(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	kv, err := s.bucket(ctx)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("script_status KV keys: %w", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "script_status KV keys: %v", err)
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, api.Errorf(http.StatusInternalServerError, "script_status KV keys: watcher closed")
			}
			if e == nil { // the snapshot's end
				return out, nil
			}
			if e.Operation() == jetstream.KeyValuePut {
				out[e.Key()] = string(e.Value())
			} else {
				delete(out, e.Key())
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Set puts value (wire.ScriptRevoked or wire.ScriptActive) for id.
func (s *Status) Set(ctx context.Context, id, value string) error {
	kv, err := s.bucket(ctx)
	if err != nil {
		return api.Unavailable("script_status KV bucket unavailable: %v", err)
	}
	if !validKey(id) {
		return api.BadRequest("invalid cmd_id %q: use letters, digits and - _ . = /", id)
	}
	if _, err := kv.Put(ctx, id, []byte(value)); err != nil {
		return api.Errorf(http.StatusInternalServerError, "write script_status for %s: %v", id, err)
	}
	return nil
}

// validKey is what a KV key may be (nats.go's rule), so a bad id is a 400
// rather than a failed write.
func validKey(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' {
		return false
	}
	for _, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == '=', c == '/':
		default:
			return false
		}
	}
	return true
}
