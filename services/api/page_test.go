package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kanade-go/kanade/services/api"
)

// FitPage sends the items that fit the budget, in order, and names the
// last one sent as the next cursor only when more follow.
func TestFitPage(t *testing.T) {
	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf("%03d-%s", i, strings.Repeat("é<", 20)) // not HTML-escaped
	}
	id := func(s string) string { return s[:3] }
	for _, budget := range []int{120, 500, 4000, 1 << 20} {
		var got []string
		after, pages := "", 0
		for {
			i := 0
			for after != "" && i < len(items) && id(items[i]) <= after {
				i++
			}
			rep, err := api.FitPage(items[i:], false, budget, id, map[string]string{"X-Total-Count": "100"})
			if err != nil {
				t.Fatalf("budget %d: %v", budget, err)
			}
			body := rep.Body.([]byte)
			if len(body)+len(rep.Header[api.HeaderNext]) > budget {
				t.Fatalf("budget %d: page of %d bytes", budget, len(body))
			}
			var page []string
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatalf("budget %d: %v in %s", budget, err, body)
			}
			if rep.Header["X-Total-Count"] != "100" {
				t.Fatalf("budget %d: headers %v", budget, rep.Header)
			}
			got, pages = append(got, page...), pages+1
			if after = rep.Header[api.HeaderNext]; after == "" {
				break
			}
			if after != id(page[len(page)-1]) {
				t.Fatalf("budget %d: next %q after %q", budget, after, page[len(page)-1])
			}
		}
		if strings.Join(got, ",") != strings.Join(items, ",") {
			t.Fatalf("budget %d: %d items in %d pages", budget, len(got), pages)
		}
		if budget == 1<<20 && pages != 1 {
			t.Errorf("everything fits: %d pages", pages)
		}
	}
	// more: rows past the slice exist, so even a whole slice names its last.
	rep, _ := api.FitPage(items[:2], true, 1<<20, id, nil)
	if rep.Header[api.HeaderNext] != "001" {
		t.Errorf("more: next %q", rep.Header[api.HeaderNext])
	}
	if _, err := api.FitPage(items, false, 20, id, nil); err == nil || !strings.Contains(err.Error(), "reply too large") {
		t.Errorf("an item larger than the budget: %v", err)
	}
	if rep, _ := api.FitPage([]string{}, false, 100, id, nil); string(rep.Body.([]byte)) != "[]" {
		t.Errorf("empty: %s", rep.Body)
	}
}
