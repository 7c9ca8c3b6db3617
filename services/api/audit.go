package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Entry is what one audit record says about one call.
type Entry struct {
	Actor  string // the user; "nats:<user>" for NATS callers ("nats" from the backend's account); "scheduler"
	Action string // "exec", "job.put", "account.create"
	Target string // the thing acted on ("" when none)
	Addr   string // the caller's address, as the gateway saw it
	// Payload is the request with its secrets redacted (a JSON object).
	Payload json.RawMessage
	// Error is set on the second record of a call that failed after its
	// first record was written: "404 no such job".
	Error string
}

// Auditor writes audit records. Record returns once the record is stored
// (acknowledged); an error means it was not, and the call must not go on.
type Auditor interface {
	Record(ctx context.Context, e Entry) error
}

// HeaderSource is the client's X-Kanade-Source, as the gateway passes it.
const HeaderSource = "Kanade-Source"

// HeaderRequestInfo is set by nats-server on requests that cross an account
// boundary through a shared service import: the caller's account and user.
const HeaderRequestInfo = "Nats-Request-Info"

// CallerActor names who makes r (see Request.Actor); "nats" for a caller
// of the backend's own account that named no one.
func CallerActor(r Request) string {
	if a := strings.TrimSpace(r.Actor()); a != "" {
		return a
	}
	return "nats"
}

// auditCall is the record of one call in progress.
type auditCall struct {
	aud   Auditor
	entry Entry
	err   error // the first record failed
}

// auditStart writes the record of a call of a mutating endpoint before its
// handler runs, so that no change is made without its record.
func auditStart(ctx context.Context, aud Auditor, ep Endpoint, r Request) *auditCall {
	if aud == nil || ep.Audit == "" {
		return &auditCall{}
	}
	payload, target := AuditPayload(r, ep.AuditTarget)
	c := &auditCall{aud: aud, entry: Entry{
		Actor: CallerActor(r), Action: ep.Audit, Target: target, Addr: r.Addr(), Payload: payload,
	}}
	c.err = aud.Record(ctx, c.entry)
	return c
}

// end writes a second record when the handler failed, so the trail says
// the change did not happen. Its own failure is only logged: nothing was
// changed.
func (c *auditCall) end(ctx context.Context, log *slog.Logger, err error) {
	if c.aud == nil || err == nil {
		return
	}
	status := http.StatusInternalServerError
	var e *Error
	if errors.As(err, &e) {
		status = e.Status
	}
	failed := c.entry
	failed.Error = fmt.Sprintf("%d %v", status, err)
	if rerr := c.aud.Record(context.WithoutCancel(ctx), failed); rerr != nil {
		log.Warn("audit record of a failed call not written", "action", failed.Action, "err", rerr)
	}
}

// secretKeys are request keys whose values never reach the audit trail.
var secretKeys = map[string]bool{
	"password": true, "old_password": true, "new_password": true, "current_password": true,
	"totp_code": true, "code": true, "current_code": true, "secret": true, "totp_secret": true,
	"token": true, "api_token": true, "private_key": true, "key": true, "password_hash": true,
}

// maxAuditPayload bounds a record's payload; past it only the top-level
// scalars stay, with the body's size and hash.
const maxAuditPayload = 8 << 10

// AuditPayload is a request's parameters as an audit payload, secrets
// redacted, and its target: the parameter targetKey from the path or the
// body. A JSON body is kept (redacted) up to maxAuditPayload; a YAML body
// (a manifest) keeps its top-level scalar fields, aliases unexpanded.
func AuditPayload(r Request, targetKey string) (json.RawMessage, string) {
	obj := map[string]any{}
	body := bytes.TrimSpace(r.Data)
	whole := true
	switch {
	case len(body) == 0:
	case body[0] == '{':
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if dec.Decode(&obj) != nil {
			obj = map[string]any{}
			whole = false
		}
	default:
		obj = yamlScalars(body)
		whole = false
	}
	for k, v := range paramHeaders(r.Header) {
		obj[k] = v
	}
	redact(obj)
	// Upstream's caller merge: who (sub) and through what (source: the
	// client's X-Kanade-Source, "spa" for the dashboard), over any "sub"
	// or "source" of the request's own, which would otherwise name
	// someone else beside the record's actor. A NATS API caller's source
	// is "nats": its headers are its own to write.
	obj["sub"] = CallerActor(r)
	delete(obj, "source")
	if _, stamped := r.natsCaller(); stamped {
		obj["source"] = "nats"
	} else if src := strings.TrimSpace(r.Header.Get(HeaderSource)); src != "" {
		obj["source"] = src
	}
	target := ""
	if targetKey != "" {
		if v, ok := obj[targetKey]; ok {
			switch t := v.(type) {
			case string:
				target = t
			case json.Number:
				target = t.String()
			}
		}
	}
	b := marshalRaw(obj)
	if len(b) > maxAuditPayload || !whole {
		small := map[string]any{}
		for k, v := range obj {
			switch v.(type) {
			case string, json.Number, bool, nil:
				if s, ok := v.(string); ok && len(s) > 256 {
					v = s[:256] + "…"
				}
				small[k] = v
			}
		}
		if len(body) > 0 {
			sum := sha256.Sum256(body)
			small["body_bytes"] = len(body)
			small["body_sha256"] = hex.EncodeToString(sum[:])
		}
		b = marshalRaw(small)
	}
	return b, target
}

func marshalRaw(v any) []byte {
	b, err := Marshal(v)
	if err != nil {
		return []byte("{}")
	}
	return b
}

// redact replaces secret values, at any depth, with "***".
func redact(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if secretKeys[strings.ToLower(k)] {
				t[k] = "***"
				continue
			}
			redact(val)
		}
	case []any:
		for _, val := range t {
			redact(val)
		}
	}
}

// yamlScalars reads the top-level scalar fields of a YAML mapping without
// resolving aliases (a document of aliases cannot grow here).
func yamlScalars(body []byte) map[string]any {
	out := map[string]any{}
	var root yaml.Node
	if yaml.Unmarshal(body, &root) != nil || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return out
	}
	m := root.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		k, v := m[i], m[i+1]
		if k.Kind == yaml.ScalarNode && v.Kind == yaml.ScalarNode {
			out[k.Value] = v.Value
		}
	}
	return out
}
