package flight

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// prepared is one prepared statement: the statement, checked by the
// tenant's worker when it was prepared and again on every execution, and
// the values last bound to its parameters.
type prepared struct {
	tenant string
	sql    string
	params *arrow.Schema
	args   []any // under preparedStore.mu
	used   time.Time
}

// preparedStore holds the open prepared statements of every tenant,
// at most max per tenant; one unused for idle is dropped when the tenant
// prepares another, so that clients that never close theirs cannot fill
// it for good.
type preparedStore struct {
	max  int
	idle time.Duration

	mu       sync.Mutex
	byHandle map[string]*prepared
	count    map[string]int // tenant → statements
}

func newPreparedStore(max int, idle time.Duration) *preparedStore {
	return &preparedStore{max: max, idle: idle, byHandle: map[string]*prepared{}, count: map[string]int{}}
}

func (ps *preparedStore) add(p *prepared, now time.Time) (string, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.count[p.tenant] >= ps.max {
		for h, q := range ps.byHandle {
			if q.tenant == p.tenant && now.Sub(q.used) > ps.idle {
				ps.deleteLocked(h)
			}
		}
	}
	if ps.count[p.tenant] >= ps.max {
		return "", status.Errorf(codes.ResourceExhausted, "%d prepared statements are open for this tenant, the server's limit; close some", ps.max)
	}
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	p.used = now
	ps.byHandle[h] = p
	ps.count[p.tenant]++
	return h, nil
}

// get returns tenant's statement of handle h, with its bound values.
func (ps *preparedStore) get(tenant, h string, now time.Time) (*prepared, []any, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.byHandle[h]
	if !ok {
		return nil, nil, status.Error(codes.NotFound, "no such prepared statement (closed, or dropped after being unused)")
	}
	if p.tenant != tenant {
		return nil, nil, status.Error(codes.PermissionDenied, "this prepared statement belongs to another tenant")
	}
	p.used = now
	return p, p.args, nil
}

func (ps *preparedStore) bind(tenant, h string, args []any, now time.Time) error {
	p, _, err := ps.get(tenant, h, now)
	if err != nil {
		return err
	}
	ps.mu.Lock()
	p.args = args
	ps.mu.Unlock()
	return nil
}

func (ps *preparedStore) close(tenant, h string) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.byHandle[h]
	if !ok {
		return nil
	}
	if p.tenant != tenant {
		return status.Error(codes.PermissionDenied, "this prepared statement belongs to another tenant")
	}
	ps.deleteLocked(h)
	return nil
}

func (ps *preparedStore) deleteLocked(h string) {
	p := ps.byHandle[h]
	delete(ps.byHandle, h)
	if ps.count[p.tenant]--; ps.count[p.tenant] == 0 {
		delete(ps.count, p.tenant)
	}
}
