package agentconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// Store reads and writes the scopes in KV agent_config.
type Store struct {
	KV     jetstream.KeyValue // agent_config; nil: missing (503)
	Groups jetstream.KeyValue // agent_groups, for a PC's groups; nil: missing (503)
}

func internal(format string, args ...any) error {
	return api.Errorf(http.StatusInternalServerError, format, args...)
}

func (s Store) bucket() error {
	if s.KV == nil {
		return api.Unavailable("agent_config KV bucket unavailable: bucket not found")
	}
	return nil
}

// read is a scope and its revision; a missing key is the empty scope at
// revision 0.
func (s Store) read(ctx context.Context, key string) (Scope, []byte, uint64, error) {
	e, err := s.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Scope{}, nil, 0, nil
	}
	if err != nil {
		return Scope{}, nil, 0, internal("read %s: %v", key, err)
	}
	var sc Scope
	if err := json.Unmarshal(e.Value(), &sc); err != nil {
		return Scope{}, nil, 0, internal("decode ConfigScope at %s: %v", key, err)
	}
	return sc, e.Value(), e.Revision(), nil
}

// Get is a scope as stored, or {} when the key is missing.
func (s Store) Get(ctx context.Context, key string) (json.RawMessage, error) {
	if err := s.bucket(); err != nil {
		return nil, err
	}
	_, raw, _, err := s.read(ctx, key)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return json.RawMessage(`{}`), nil
	}
	return raw, nil
}

// DecodeScope checks a scope body as the API's decoder does: the types,
// and max_local_concurrent at least 1; a failure is a 422.
func DecodeScope(body []byte) (Scope, error) {
	var sc Scope
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		b = []byte(`{}`)
	}
	if err := json.Unmarshal(b, &sc); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return sc, api.BadRequest("parse JSON body: %v", err)
		}
		return sc, api.Errorf(http.StatusUnprocessableEntity, "invalid ConfigScope: %v", err)
	}
	if b[0] != '{' {
		return sc, api.Errorf(http.StatusUnprocessableEntity, "invalid ConfigScope: must be an object")
	}
	if sc.MaxLocalConcurrent != nil && *sc.MaxLocalConcurrent < 1 {
		return sc, api.Errorf(http.StatusUnprocessableEntity, "invalid ConfigScope: max_local_concurrent must be at least 1")
	}
	return sc, nil
}

// Put stores the body as received (after the type checks) and echoes it.
func (s Store) Put(ctx context.Context, key string, body []byte) (json.RawMessage, error) {
	if err := s.bucket(); err != nil {
		return nil, err
	}
	if _, err := DecodeScope(body); err != nil {
		return nil, err
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		b = []byte(`{}`)
	}
	if _, err := s.KV.Put(ctx, key, b); err != nil {
		return nil, internal("write ConfigScope at %s: %v", key, err)
	}
	return b, nil
}

// Delete removes a scope.
func (s Store) Delete(ctx context.Context, key string) error {
	if err := s.bucket(); err != nil {
		return err
	}
	if err := s.KV.Delete(ctx, key); err != nil {
		return internal("delete KV key %s: %v", key, err)
	}
	return nil
}

// FieldReply answers a field set or unset.
type FieldReply struct {
	Scope   Scope `json:"scope"`
	Changed bool  `json:"changed"`
}

// SetField sets one field by compare-and-set; an unchanged value does not
// write.
func (s Store) SetField(ctx context.Context, key, field, value string) (FieldReply, error) {
	return s.modify(ctx, key, func(sc *Scope) (bool, error) {
		before, _ := json.Marshal(sc)
		if err := sc.SetField(field, value); err != nil {
			return false, api.BadRequest("%v", err)
		}
		after, _ := json.Marshal(sc)
		return !bytes.Equal(before, after), nil
	})
}

// UnsetField clears one field by compare-and-set.
func (s Store) UnsetField(ctx context.Context, key, field string) (FieldReply, error) {
	return s.modify(ctx, key, func(sc *Scope) (bool, error) {
		was, err := sc.UnsetField(field)
		if err != nil {
			return false, api.BadRequest("%v", err)
		}
		return was, nil
	})
}

func (s Store) modify(ctx context.Context, key string, change func(*Scope) (bool, error)) (FieldReply, error) {
	if err := s.bucket(); err != nil {
		return FieldReply{}, err
	}
	var last error
	for attempt := 1; attempt <= 32; attempt++ {
		sc, _, rev, err := s.read(ctx, key)
		if err != nil {
			return FieldReply{}, err
		}
		changed, err := change(&sc)
		if err != nil || !changed {
			return FieldReply{Scope: sc}, err
		}
		b, _ := json.Marshal(sc)
		if rev == 0 {
			_, err = s.KV.Create(ctx, key, b)
		} else {
			_, err = s.KV.Update(ctx, key, b, rev)
		}
		if err == nil {
			return FieldReply{Scope: sc, Changed: true}, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return FieldReply{}, ctx.Err()
		case <-time.After(min(time.Duration(attempt)*2*time.Millisecond, 25*time.Millisecond)):
		}
	}
	return FieldReply{}, internal("update %s: %v", key, last)
}

// scope reads a scope for resolution; nil when missing.
func (s Store) scope(ctx context.Context, key string) (*Scope, error) {
	sc, raw, _, err := s.read(ctx, key)
	if err != nil || raw == nil {
		return nil, err
	}
	return &sc, nil
}

// PCGroups is a PC's manual groups (agent_groups only, as upstream's
// preview reads them); a read or decode failure is no groups.
func (s Store) PCGroups(ctx context.Context, pc string) ([]string, error) {
	if s.Groups == nil {
		return nil, api.Unavailable("agent_groups KV bucket unavailable: bucket not found")
	}
	e, err := s.Groups.Get(ctx, pc)
	if err != nil {
		return []string{}, nil
	}
	g, err := wire.DecodeAgentGroups(e.Value())
	if err != nil || g.Groups == nil {
		return []string{}, nil
	}
	gs := slices.Clone(g.Groups)
	slices.Sort(gs)
	return slices.Compact(gs), nil
}

// layers reads global, the groups' scopes and (withPC) the PC's scope.
func (s Store) layers(ctx context.Context, groups []string, pc string) (Layers, error) {
	var l Layers
	var err error
	if l.Global, err = s.scope(ctx, GlobalKey); err != nil {
		return l, err
	}
	l.Groups = map[string]Scope{}
	for _, g := range groups {
		sc, err := s.scope(ctx, GroupKey(g))
		if err != nil {
			return l, err
		}
		if sc != nil {
			l.Groups[g] = *sc
		}
	}
	if pc != "" {
		if l.PC, err = s.scope(ctx, PCKey(pc)); err != nil {
			return l, err
		}
	}
	return l, nil
}

// GroupInherited is what a group's scope is laid over: built-in < global.
func (s Store) GroupInherited(ctx context.Context) (Effective, error) {
	if err := s.bucket(); err != nil {
		return Effective{}, err
	}
	l, err := s.layers(ctx, nil, "")
	if err != nil {
		return Effective{}, err
	}
	e, _ := Resolve(l)
	return e, nil
}

// PCInherited is what a PC's scope is laid over: built-in < global < its
// groups (warnings dropped).
func (s Store) PCInherited(ctx context.Context, pc string) (Effective, error) {
	if err := s.bucket(); err != nil {
		return Effective{}, err
	}
	groups, err := s.PCGroups(ctx, pc)
	if err != nil {
		return Effective{}, err
	}
	l, err := s.layers(ctx, groups, "")
	if err != nil {
		return Effective{}, err
	}
	e, _ := Resolve(l)
	return e, nil
}

// EffectiveConfig answers GET /api/agents/{pc_id}/effective_config.
type EffectiveConfig struct {
	PCID      string    `json:"pc_id"`
	Effective Effective `json:"effective"`
	Warnings  []string  `json:"warnings"`
	MyGroups  []string  `json:"my_groups"`
}

// EffectiveFor resolves a PC's configuration.
func (s Store) EffectiveFor(ctx context.Context, pc string) (EffectiveConfig, error) {
	if err := s.bucket(); err != nil {
		return EffectiveConfig{}, err
	}
	groups, err := s.PCGroups(ctx, pc)
	if err != nil {
		return EffectiveConfig{}, err
	}
	l, err := s.layers(ctx, groups, pc)
	if err != nil {
		return EffectiveConfig{}, err
	}
	e, w := Resolve(l)
	return EffectiveConfig{PCID: pc, Effective: e, Warnings: w, MyGroups: groups}, nil
}
