package projector

import "sync"

// knownValues remembers pc_ids and job_ids already in the distinct-value
// tables, so a batch does not re-insert the same few thousand values every
// time. It is only a shortcut: a value missing here is inserted with
// INSERT OR IGNORE. Pruning the tables clears it (within the pruning
// transaction), and the generation keeps a batch that committed before the
// prune from re-adding values the prune removed.
type knownValues struct {
	mu   sync.Mutex
	gen  uint64
	pcs  map[string]struct{}
	jobs map[string]struct{}
}

// maxKnown bounds the memory: past it the set starts over.
const maxKnown = 500_000

func newKnownValues() *knownValues {
	return &knownValues{pcs: map[string]struct{}{}, jobs: map[string]struct{}{}}
}

// unknown returns the values of vals not known, and the generation to add
// them under once committed.
func (k *knownValues) unknown(pcs, jobs []string) ([]string, []string, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	filter := func(m map[string]struct{}, vals []string) []string {
		var out []string
		for _, v := range vals {
			if _, ok := m[v]; !ok {
				out = append(out, v)
			}
		}
		return out
	}
	return filter(k.pcs, pcs), filter(k.jobs, jobs), k.gen
}

// add records committed values, unless a prune happened since gen.
func (k *knownValues) add(gen uint64, pcs, jobs []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if gen != k.gen {
		return
	}
	if len(k.pcs)+len(pcs) > maxKnown || len(k.jobs)+len(jobs) > maxKnown {
		k.pcs, k.jobs = map[string]struct{}{}, map[string]struct{}{}
	}
	for _, v := range pcs {
		k.pcs[v] = struct{}{}
	}
	for _, v := range jobs {
		k.jobs[v] = struct{}{}
	}
}

// clear forgets everything; called inside the transaction that prunes.
func (k *knownValues) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gen++
	k.pcs, k.jobs = map[string]struct{}{}, map[string]struct{}{}
}
