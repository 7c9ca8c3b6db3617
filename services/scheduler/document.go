package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kanade-go/kanade/services/api"
)

// decodeDocument reads a manifest or schedule body, JSON or YAML, into a
// generic object so that fields this backend does not know survive a round
// trip. The Content-Type decides; without one a leading '{' means JSON.
// literal names top-level keys whose YAML scalars keep their text ("1.0"
// stays "1.0" rather than becoming the number 1).
func decodeDocument(data []byte, contentType string, literal ...string) (map[string]any, error) {
	body := bytes.TrimSpace(data)
	if len(body) == 0 {
		return nil, api.BadRequest("request body is empty")
	}
	ct := strings.ToLower(contentType)
	isJSON := strings.Contains(ct, "json") || (!strings.Contains(ct, "yaml") && body[0] == '{')
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			return nil, api.BadRequest("request body is not a valid JSON object: %v", err)
		}
		if dec.More() {
			return nil, api.BadRequest("request body: one JSON object expected")
		}
		if doc == nil {
			return nil, api.BadRequest("request body must be an object")
		}
		return doc, nil
	}
	var root yaml.Node
	if err := yaml.Unmarshal(body, &root); err != nil {
		return nil, api.BadRequest("request body is not valid YAML: %v", err)
	}
	if len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, api.BadRequest("request body must be a mapping")
	}
	limit := max(MaxYAMLBytes, 2*int64(len(body)))
	b := &yamlBudget{nodes: MaxYAMLNodes, bytes: limit}
	v, err := b.value(root.Content[0], literal)
	if errors.Is(err, errYAMLBudget) {
		return nil, api.BadRequest("request body: YAML aliases expand past the limit of %d nodes or %d bytes of values; write the repeated parts out, or use JSON", MaxYAMLNodes, limit)
	}
	if err != nil {
		return nil, api.BadRequest("request body: %v", err)
	}
	return v.(map[string]any), nil
}

// Limits of a YAML body once its aliases are expanded. A document is
// small, but each alias copies what it names, so a few hundred bytes of
// nested aliases ("billion laughs") expand to gigabytes. Expansion stops
// at whichever limit comes first. The byte limit is at least twice the
// body, so a document without aliases only meets the node limit.
const (
	MaxYAMLNodes = 100_000
	MaxYAMLBytes = 4 << 20
)

var errYAMLBudget = errors.New("YAML expansion budget exceeded")

// yamlBudget is what is left of the limits while a document is expanded.
type yamlBudget struct {
	nodes int
	bytes int64
}

// spend takes one node of n bytes from the budget.
func (b *yamlBudget) spend(n int) error {
	b.nodes--
	b.bytes -= int64(n)
	if b.nodes < 0 || b.bytes < 0 {
		return errYAMLBudget
	}
	return nil
}

// value turns a YAML node into JSON-ready values (string keys only),
// each node, aliased or not, paid for from the budget.
func (b *yamlBudget) value(n *yaml.Node, literal []string) (any, error) {
	if err := b.spend(len(n.Value)); err != nil {
		return nil, err
	}
	switch n.Kind {
	case yaml.AliasNode:
		return b.value(n.Alias, nil)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, errors.New("mapping keys must be scalars")
			}
			if k.Tag == "!!merge" {
				return nil, errors.New("merge keys (<<) are not supported")
			}
			if err := b.spend(len(k.Value)); err != nil {
				return nil, err
			}
			if v.Kind == yaml.ScalarNode && v.Tag != "!!null" && slices.Contains(literal, k.Value) {
				if err := b.spend(len(v.Value)); err != nil {
					return nil, err
				}
				m[k.Value] = v.Value
				continue
			}
			val, err := b.value(v, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k.Value, err)
			}
			m[k.Value] = val
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			val, err := b.value(c, nil)
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		return s, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, fmt.Errorf("unsupported YAML node")
}

// bindDocument decodes the known fields of doc into v; a field of the wrong
// type is a 400 naming it.
func bindDocument(doc map[string]any, v any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return api.BadRequest("request body: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return api.TypeError("field", te)
		}
		return api.BadRequest("request body: %v", err)
	}
	return nil
}

// validID reports whether s can name a job or schedule: a KV key that is
// also safe inside derived names.
func validID(s string) bool {
	if s == "" || len(s) > 200 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// withField returns the JSON object raw with key set to the JSON of v,
// every other member kept as it was. The member is appended; a member of
// that name already there gives way (the object is re-encoded then).
func withField(raw json.RawMessage, key string, v any) (json.RawMessage, error) {
	val, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", key, err)
	}
	k, _ := json.Marshal(key)
	b := bytes.TrimSpace(raw)
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' || !json.Valid(b) {
		return nil, errors.New("not a JSON object")
	}
	if bytes.Contains(b, k) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			m[key] = val
			return api.Marshal(m)
		}
	}
	body := bytes.TrimSpace(b[1 : len(b)-1])
	out := make([]byte, 0, len(b)+len(k)+len(val)+3)
	out = append(out, '{')
	out = append(out, body...)
	if len(body) > 0 {
		out = append(out, ',')
	}
	out = append(out, k...)
	out = append(out, ':')
	out = append(out, val...)
	return append(out, '}'), nil
}
