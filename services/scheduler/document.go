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
	v, err := yamlValue(root.Content[0], literal)
	if err != nil {
		return nil, api.BadRequest("request body: %v", err)
	}
	return v.(map[string]any), nil
}

// yamlValue turns a YAML node into JSON-ready values (string keys only).
func yamlValue(n *yaml.Node, literal []string) (any, error) {
	switch n.Kind {
	case yaml.AliasNode:
		return yamlValue(n.Alias, nil)
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
			if v.Kind == yaml.ScalarNode && v.Tag != "!!null" && slices.Contains(literal, k.Value) {
				m[k.Value] = v.Value
				continue
			}
			val, err := yamlValue(v, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k.Value, err)
			}
			m[k.Value] = val
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			val, err := yamlValue(c, nil)
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
			return json.Marshal(m)
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
