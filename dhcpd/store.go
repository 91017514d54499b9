package dhcpd

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// Bucket names in the controller's runtime database.
var (
	bucketLeases     = []byte("dhcpd.leases")
	bucketDiscovered = []byte("dhcpd.discovered")
)

// LeaseState is the state of a lease record.
type LeaseState uint8

const (
	// LeaseBound: the address belongs to MAC until Expires.
	LeaseBound LeaseState = 1
	// LeaseReleased: the client gave the address back (DHCPRELEASE); it
	// gets it again first if it comes back.
	LeaseReleased LeaseState = 2
	// LeaseDeclined: a client reported the address in use (DHCPDECLINE);
	// it stays out of the pool until Expires.
	LeaseDeclined LeaseState = 3
)

func (s LeaseState) String() string {
	switch s {
	case LeaseBound:
		return "bound"
	case LeaseReleased:
		return "released"
	case LeaseDeclined:
		return "declined"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText makes a LeaseState read as its name in JSON.
func (s LeaseState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Lease is one address record of the full-mode server.
type Lease struct {
	IP      netip.Addr
	MAC     net.HardwareAddr
	State   LeaseState
	Expires time.Time
	// Granted is when the lease was last granted or renewed.
	Granted time.Time
	// Hostname is what the client called itself (option 12).
	Hostname string
	// Node is the node name the MAC belonged to when granted.
	Node      string
	Interface string
	Class     Class
}

// Active reports whether the lease holds its address at time now.
func (l Lease) Active(now time.Time) bool {
	return l.State == LeaseBound && now.Before(l.Expires)
}

// Discovered is a booting client that is not a node of the cluster.
type Discovered struct {
	MAC           net.HardwareAddr `json:"-"`
	Class         Class            `json:"class"`
	Serial        string           `json:"serial,omitempty"`
	BoardRevision uint32           `json:"board_revision,omitempty"`
	Arch          uint16           `json:"arch"`
	VendorClass   string           `json:"vendor_class,omitempty"`
	Interface     string           `json:"interface,omitempty"`
	// Relay is the relay agent (giaddr) it came through, if any.
	Relay     netip.Addr `json:"relay,omitzero"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
}

// Store is dhcpd's part of the runtime database: the API reads leases and
// discovered clients through it, also while no server runs.
type Store struct {
	db *bbolt.DB
	// journal is the lease journal's path (see journal.go). mu orders
	// readers against the committer moving the journal into bbolt and
	// emptying it: between the two, a reader would see records twice
	// (harmless) or, reading the journal first, miss them.
	journal string
	mu      sync.RWMutex
}

// OpenStore creates dhcpd's buckets in db if needed.
func OpenStore(db *bbolt.DB) (*Store, error) {
	if db == nil {
		return nil, errors.New("dhcpd store: no database")
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketLeases, bucketDiscovered} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dhcpd store: create buckets: %w", err)
	}
	return &Store{db: db, journal: journalPath(db)}, nil
}

// Leases returns every lease record (bound, released and declined; check
// Lease.Active), ordered by address: bbolt's, with the lease journal's
// newer records applied over them.
func (st *Store) Leases() ([]Lease, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	records, err := readJournal(st.journal)
	if err != nil {
		return nil, fmt.Errorf("dhcpd store: %w", err)
	}
	newer := map[netip.Addr]Lease{}
	_ = forEachRecord(records, func(k, v []byte) error {
		if l, err := decodeLease(k, v); err == nil {
			newer[l.IP] = l
		}
		return nil
	})
	var out []Lease
	err = st.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
			l, err := decodeLease(k, v)
			if err != nil {
				return nil // a record this version cannot read is skipped, not fatal
			}
			if n, ok := newer[l.IP]; ok {
				l = n
				delete(newer, l.IP)
			}
			out = append(out, l)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dhcpd store: read leases: %w", err)
	}
	if len(newer) > 0 {
		for _, l := range newer {
			out = append(out, l)
		}
		slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	}
	return out, nil
}

// applyJournal moves what the lease journal holds into bbolt and empties
// it. New calls it before loading the leases; the server's committer then
// owns the journal.
func (st *Store) applyJournal() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	records, err := readJournal(st.journal)
	if err != nil || len(records) == 0 {
		return err
	}
	if err := st.db.Update(func(tx *bbolt.Tx) error { return putRecords(tx, records) }); err != nil {
		return fmt.Errorf("dhcpd store: apply lease journal: %w", err)
	}
	j, err := openJournal(st.journal)
	if err != nil {
		return fmt.Errorf("dhcpd store: %w", err)
	}
	defer j.close()
	if err := j.reset(); err != nil {
		return fmt.Errorf("dhcpd store: %w", err)
	}
	return nil
}

// LeaseByMAC returns the most recently granted lease of mac.
func (st *Store) LeaseByMAC(mac net.HardwareAddr) (Lease, bool, error) {
	leases, err := st.Leases()
	if err != nil {
		return Lease{}, false, err
	}
	var best Lease
	found := false
	for _, l := range leases {
		if slices.Equal(l.MAC, mac) && l.State != LeaseDeclined && (!found || l.Granted.After(best.Granted)) {
			best, found = l, true
		}
	}
	return best, found, nil
}

// Discovered returns every recorded unknown client, ordered by MAC.
func (st *Store) Discovered() ([]Discovered, error) {
	var out []Discovered
	err := st.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDiscovered).ForEach(func(k, v []byte) error {
			var d Discovered
			if err := json.Unmarshal(v, &d); err != nil {
				return nil
			}
			d.MAC = slices.Clone(net.HardwareAddr(k))
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dhcpd store: read discovered clients: %w", err)
	}
	return out, nil
}

// DiscoveredByMAC returns the record of one discovered client.
func (st *Store) DiscoveredByMAC(mac net.HardwareAddr) (Discovered, bool, error) {
	var d Discovered
	found := false
	err := st.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketDiscovered).Get(mac)
		if v == nil {
			return nil
		}
		found = true
		d.MAC = slices.Clone(mac)
		return json.Unmarshal(v, &d)
	})
	if err != nil {
		return Discovered{}, false, fmt.Errorf("dhcpd store: read discovered client %s: %w", mac, err)
	}
	return d, found, nil
}

// Forget removes a discovered client (after `pictl node add --from MAC`
// adopted it). It reports whether there was one.
func (st *Store) Forget(mac net.HardwareAddr) (bool, error) {
	found := false
	err := st.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDiscovered)
		found = b.Get(mac) != nil
		return b.Delete(mac)
	})
	if err != nil {
		return false, fmt.Errorf("dhcpd store: forget %s: %w", mac, err)
	}
	return found, nil
}

const leaseRecordVersion = 1

// encodeLease is the lease record's value: version, state, class,
// hardware address, expiry and grant time (Unix ns), then three short
// strings (hostname, node, interface), each length-prefixed.
func encodeLease(l *Lease) []byte {
	return appendLease(make([]byte, 0, 32+len(l.MAC)+len(l.Hostname)+len(l.Node)+len(l.Interface)), l)
}

func appendLease(b []byte, l *Lease) []byte {
	b = append(b, leaseRecordVersion, byte(l.State), byte(l.Class), byte(len(l.MAC)))
	b = append(b, l.MAC...)
	b = binary.BigEndian.AppendUint64(b, uint64(l.Expires.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(l.Granted.UnixNano()))
	for _, s := range [...]string{l.Hostname, l.Node, l.Interface} {
		if len(s) > 255 {
			s = s[:255]
		}
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}

var errBadRecord = errors.New("bad lease record")

func decodeLease(k, v []byte) (Lease, error) {
	var l Lease
	if len(k) != 4 || len(v) < 4 || v[0] != leaseRecordVersion {
		return l, errBadRecord
	}
	l.IP = netip.AddrFrom4([4]byte(k))
	l.State, l.Class = LeaseState(v[1]), Class(v[2])
	n := int(v[3])
	v = v[4:]
	if len(v) < n+16 || n > 16 {
		return l, errBadRecord
	}
	l.MAC = slices.Clone(net.HardwareAddr(v[:n]))
	v = v[n:]
	l.Expires = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
	l.Granted = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))).UTC()
	v = v[16:]
	for _, s := range []*string{&l.Hostname, &l.Node, &l.Interface} {
		if len(v) < 1 || len(v) < 1+int(v[0]) {
			return l, errBadRecord
		}
		*s = string(v[1 : 1+int(v[0])])
		v = v[1+int(v[0]):]
	}
	return l, nil
}

func ipKey(ip netip.Addr) []byte {
	b := ip.As4()
	return b[:]
}

// Model names the discovered machine in cluster.yaml's vocabulary (node
// "model"): pi3, pi3+, pi4, pi5, pi (a Pi of unknown model), x86, arm64;
// "" when the class says nothing.
func (d Discovered) Model() string {
	switch d.Class {
	case ClassPi3B:
		return "pi3"
	case ClassPi3BPlus:
		return "pi3+"
	case ClassPi4:
		return "pi4"
	case ClassPi5:
		return "pi5"
	case ClassPi:
		return "pi"
	case ClassIPXE, ClassPXE:
		switch d.Arch {
		case 0, 6, 7, 9:
			return "x86"
		case 11:
			return "arm64"
		}
	}
	return ""
}
