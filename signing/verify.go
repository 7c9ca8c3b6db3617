package signing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// KeyringEntry is one key an agent trusts, as upstream's agents store it:
// {"kid":"…","public_key":"<b64>","label":"backend"}. A break-glass entry
// has MaxAgeSecs: its signatures are good only within ±MaxAgeSecs of now.
type KeyringEntry struct {
	Kid           string `json:"kid"`
	PublicKey     string `json:"public_key"`
	Label         string `json:"label,omitempty"`
	MaxAgeSecs    *int64 `json:"max_age_secs,omitempty"`
	AuditEveryUse bool   `json:"audit_every_use,omitempty"`
}

type trustedKey struct {
	pub    ed25519.PublicKey
	maxAge time.Duration // 0: no freshness bound (the backend's key)
}

// Keyring is the set of keys an agent trusts, by kid.
type Keyring struct {
	keys map[string]trustedKey
}

// ParseKeyring reads a keyring: a JSON array of entries. As upstream, one
// bad entry (a repeated kid, bad base64, a wrong length, not a point of
// the curve) rejects the whole ring.
func ParseKeyring(b []byte) (*Keyring, error) {
	var entries []KeyringEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("keyring: want a JSON array of {kid, public_key}: %w", err)
	}
	return NewKeyring(entries)
}

// NewKeyring builds a keyring from entries, checked as ParseKeyring does.
func NewKeyring(entries []KeyringEntry) (*Keyring, error) {
	k := &Keyring{keys: make(map[string]trustedKey, len(entries))}
	for i, e := range entries {
		kid := strings.TrimSpace(e.Kid)
		if kid == "" {
			return nil, fmt.Errorf("keyring entry %d: empty kid", i)
		}
		if _, dup := k.keys[kid]; dup {
			return nil, fmt.Errorf("keyring: kid %q appears twice", kid)
		}
		pub, err := decodeBase64(e.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("keyring entry %q: public_key is not base64 (standard, padded): %w", kid, err)
		}
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("keyring entry %q: public_key is %d bytes, want %d", kid, len(pub), ed25519.PublicKeySize)
		}
		if !onCurve(pub) {
			return nil, fmt.Errorf("keyring entry %q: public_key is not a point of Ed25519", kid)
		}
		t := trustedKey{pub: pub}
		if e.MaxAgeSecs != nil {
			if *e.MaxAgeSecs <= 0 {
				return nil, fmt.Errorf("keyring entry %q: max_age_secs must be positive", kid)
			}
			t.maxAge = time.Duration(*e.MaxAgeSecs) * time.Second
		}
		k.keys[kid] = t
	}
	return k, nil
}

// Len is the number of keys.
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// CommandKeys is what an agent reports in its heartbeat: "kid:fingerprint"
// per key, sorted by kid.
func (k *Keyring) CommandKeys() []string {
	if k == nil {
		return nil
	}
	out := make([]string, 0, len(k.keys))
	for kid, t := range k.keys {
		out = append(out, kid+":"+Fingerprint(t.pub))
	}
	slices.Sort(out)
	return out
}

// Outcome is the result of checking a message, named as upstream's agents
// name their command_signature_* events.
type Outcome string

// Outcomes. Only OK may run on an enforcing agent.
const (
	OK               Outcome = "command_signature_ok"
	Absent           Outcome = "command_signature_absent"
	Unprovisioned    Outcome = "command_signature_unprovisioned"
	UnknownKey       Outcome = "command_signature_unknown_key"
	Invalid          Outcome = "command_signature_invalid"
	Stale            Outcome = "command_signature_stale"
	ClockAhead       Outcome = "command_signature_clock_ahead"
	Expired          Outcome = "command_signature_expired"
	Misaddressed     Outcome = "command_signature_misaddressed"
	EnvelopeRejected Outcome = "command_signature_envelope_rejected"
)

// Verdict is what Verify found.
type Verdict struct {
	Outcome Outcome
	Kid     string    // the claimed key id, if any
	At      time.Time // the signed send time, when the headers carry one
	Detail  string    // what exactly was wrong
	maxAge  time.Duration
}

// Reason is the text after "refused: " in the stderr of an enforcing
// agent's refusal result.
func (v Verdict) Reason() string {
	switch v.Outcome {
	case OK:
		return ""
	case Absent:
		return "command carried no signature, and this host requires one. Give the backend a signing key (KANADE_COMMAND_SIGNING_KEY and KANADE_COMMAND_SIGNING_KID)."
	case Unprovisioned:
		return "this host holds no command-signing keys at all, so it cannot check the signature. Add the backend's keyring entry to this host."
	case UnknownKey:
		return fmt.Sprintf("signed by a key this host does not have — it likely missed a rotation. Key id %q: add its keyring entry to this host.", v.Kid)
	case Invalid:
		return "signature does not match these bytes. The Command was altered after signing, or its signature headers are malformed (" + v.Detail + ")."
	case Stale:
		return "signature is outside its freshness window. " + v.Detail
	case ClockAhead:
		return "envelope is signed too far in the future for this host's clock. " + v.Detail
	case Expired:
		return "envelope has expired. " + v.Detail
	case Misaddressed:
		return "envelope is addressed to another host. " + v.Detail
	default:
		return "envelope rejected: " + v.Detail
	}
}

// Verify checks a message's signature headers over its body as an
// upstream agent does: no Kanade-Sig* header at all is Absent; any one of
// them makes it a claim that must be complete and good. now bounds a
// break-glass key's window. It checks the signature only; an envelope's
// own rules are CheckEnvelope's.
func (k *Keyring) Verify(h nats.Header, body []byte, now time.Time) Verdict {
	sig, kid, alg, at, claimed := sigHeaders(h)
	if !claimed {
		return Verdict{Outcome: Absent}
	}
	v := Verdict{Kid: kid}
	bad := func(format string, args ...any) Verdict {
		v.Outcome, v.Detail = Invalid, fmt.Sprintf(format, args...)
		return v
	}
	if sig == "" || kid == "" || at == "" {
		return bad("incomplete signature headers: %s, %s and %s are all required", HeaderSig, HeaderKid, HeaderAt)
	}
	if alg != "" && alg != Alg {
		return bad("unsupported %s %q", HeaderAlg, alg)
	}
	atMS, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return bad("%s %q is not decimal milliseconds", HeaderAt, at)
	}
	v.At = time.UnixMilli(atMS).UTC()
	raw, err := decodeBase64(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return bad("%s is not a base64 %d-byte signature", HeaderSig, ed25519.SignatureSize)
	}
	if k.Len() == 0 {
		v.Outcome = Unprovisioned
		return v
	}
	t, ok := k.keys[kid]
	if !ok {
		v.Outcome = UnknownKey
		return v
	}
	if !ed25519.Verify(t.pub, signedBytes(atMS, body), raw) {
		return bad("Ed25519 verification failed for key %q", kid)
	}
	v.maxAge = t.maxAge
	if t.maxAge > 0 {
		if d := now.Sub(v.At); d > t.maxAge || -d > t.maxAge {
			v.Outcome = Stale
			v.Detail = fmt.Sprintf("Key %q is a break-glass key good for ±%s; signed at %s.", kid, t.maxAge, v.At.Format(time.RFC3339Nano))
			return v
		}
	}
	v.Outcome = OK
	return v
}

// decodeBase64 decodes standard padded base64 as strictly as upstream's
// agents: no stray bits in the padding, and no line breaks (which Go's
// decoder would skip).
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("line break in base64")
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

// sigHeaders reads the four signature headers, whatever the case of their
// names; claimed is true when any header starting with Kanade-Sig is there.
func sigHeaders(h nats.Header) (sig, kid, alg, at string, claimed bool) {
	for name, vals := range h {
		if len(vals) == 0 {
			continue
		}
		switch {
		case strings.EqualFold(name, HeaderSig):
			sig = vals[0]
		case strings.EqualFold(name, HeaderKid):
			kid = vals[0]
		case strings.EqualFold(name, HeaderAlg):
			alg = vals[0]
		case strings.EqualFold(name, HeaderAt):
			at = vals[0]
		case len(name) >= len(HeaderSig) && strings.EqualFold(name[:len(HeaderSig)], HeaderSig):
		default:
			continue
		}
		claimed = true
	}
	return
}

// curveP and curveD are Ed25519's field prime 2^255-19 and the curve's d.
var (
	curveP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	curveD = func() *big.Int {
		// d = -121665/121666 mod p
		n := new(big.Int).Neg(big.NewInt(121665))
		inv := new(big.Int).ModInverse(big.NewInt(121666), curveP)
		return n.Mul(n, inv).Mod(n, curveP)
	}()
)

// onCurve reports whether a 32-byte encoded point decompresses: some x
// has x² = (y²-1)/(d·y²+1) mod p. Like the usual decoders it takes y
// reduced mod p.
func onCurve(enc []byte) bool {
	le := bytes.Clone(enc)
	le[31] &= 0x7f
	slices.Reverse(le)
	y := new(big.Int).SetBytes(le)
	y.Mod(y, curveP)
	y2 := new(big.Int).Mul(y, y)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	u.Mod(u, curveP)
	v := new(big.Int).Mul(curveD, y2)
	v.Add(v, big.NewInt(1)).Mod(v, curveP)
	if v.Sign() == 0 {
		return false
	}
	x2 := u.Mul(u, new(big.Int).ModInverse(v, curveP)).Mod(u, curveP)
	if x2.Sign() == 0 {
		return true
	}
	// Euler's criterion: x2 is a square iff x2^((p-1)/2) == 1.
	e := new(big.Int).Rsh(new(big.Int).Sub(curveP, big.NewInt(1)), 1)
	return new(big.Int).Exp(x2, e, curveP).Cmp(big.NewInt(1)) == 0
}
