package groups

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/mail"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
)

// Contacts are a group's addresses in KV group_contacts: {"emails":[…]}.
type Contacts struct {
	Emails []string `json:"emails"`
}

// NormalizeEmails trims, lower-cases, drops blanks, sorts and dedups, and
// refuses an address RFC 5322 does not accept (single-label domains such
// as ops@localhost pass).
func NormalizeEmails(in []string) ([]string, error) {
	out := []string{}
	for _, e := range in {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		a, err := mail.ParseAddress(e)
		if err != nil || a.Address != e || a.Name != "" {
			return nil, api.BadRequest("not a valid email address: %q", e)
		}
		out = append(out, e)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// GetContacts is a group's addresses; none when unset.
func GetContacts(ctx context.Context, kv jetstream.KeyValue, group string) (Contacts, error) {
	if kv == nil {
		return Contacts{}, api.Unavailable("group_contacts KV bucket unavailable: bucket not found")
	}
	e, err := kv.Get(ctx, group)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Contacts{Emails: []string{}}, nil
	}
	if err != nil {
		return Contacts{}, internal("read group_contacts for %s: %v", group, err)
	}
	var c Contacts
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Contacts{}, internal("decode group_contacts for %s: %v", group, err)
	}
	if c.Emails == nil {
		c.Emails = []string{}
	}
	return c, nil
}

// PutContacts replaces a group's addresses (a blind put of the normalised
// list).
func PutContacts(ctx context.Context, kv jetstream.KeyValue, group string, emails []string) (Contacts, error) {
	if kv == nil {
		return Contacts{}, api.Unavailable("group_contacts KV bucket unavailable: bucket not found")
	}
	if strings.TrimSpace(group) == "" || strings.ContainsAny(group, "*> \t") {
		return Contacts{}, api.BadRequest("invalid group name %q", group)
	}
	n, err := NormalizeEmails(emails)
	if err != nil {
		return Contacts{}, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(Contacts{Emails: n})
	if _, err := kv.Put(ctx, group, bytes.TrimSpace(b.Bytes())); err != nil {
		return Contacts{}, internal("write group_contacts for %s: %v", group, err)
	}
	return Contacts{Emails: n}, nil
}
