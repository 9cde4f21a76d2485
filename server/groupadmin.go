package server

import (
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/httpx"
)

// GroupsOverview is what GET /api/groups shows: NetGroup totals and, per
// developer key, its groups (largest first, at most a limit per key).
type GroupsOverview struct {
	Groups  int         `json:"groups"`
	Members int         `json:"members"`
	Keys    []KeyGroups `json:"keys"`
}

// KeyGroups is one developer key's NetGroups.
type KeyGroups struct {
	Key     string      `json:"key"`
	Groups  int         `json:"groups"`
	Members int         `json:"members"`
	List    []GroupInfo `json:"list"`
}

// GroupInfo describes one group.
type GroupInfo struct {
	ID      string    `json:"id"` // 64 hex digits
	Key     string    `json:"key,omitempty"`
	Members int       `json:"members"`
	Since   time.Time `json:"since"`
	// MemberList, for one group: the members in ring (group address)
	// order, at most a limit of them.
	MemberList []GroupMember `json:"member_list,omitempty"`
}

// GroupMember is one member of a group.
type GroupMember struct {
	PeerID string    `json:"peer_id"`
	Joined time.Time `json:"joined"`
}

// Groups summarises the NetGroups, with at most limit groups listed per
// developer key (none if limit <= 0).
func (s *Server) Groups(limit int) GroupsOverview {
	var o GroupsOverview
	o.Groups, o.Members = s.groups.Totals()
	o.Keys = []KeyGroups{}
	for _, k := range s.groups.Keys(limit) {
		kg := KeyGroups{Key: k.DevKey, Groups: k.GroupCount, Members: k.Members, List: []GroupInfo{}}
		for _, g := range k.Groups {
			kg.List = append(kg.List, GroupInfo{ID: hex.EncodeToString(g.ID[:]), Members: g.Members, Since: g.Since})
		}
		o.Keys = append(o.Keys, kg)
	}
	return o
}

// ErrBadGroupID is Group's answer to an ID that is not 64 hex digits.
var ErrBadGroupID = errors.New("server: a group ID is 64 hex digits")

// Group describes the groups with a given ID (one per developer key that
// has it; key, if not empty, selects one), listing at most limit members
// of each (none if limit <= 0).
func (s *Server) Group(id, key string, limit int) ([]GroupInfo, error) {
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != 32 {
		return nil, ErrBadGroupID
	}
	out := []GroupInfo{}
	for _, g := range s.groups.Groups([32]byte(raw)) {
		if key != "" && g.DevKey != key {
			continue
		}
		ms, sum, ok := s.groups.Members(g, limit)
		if !ok {
			continue // emptied meanwhile
		}
		info := GroupInfo{ID: hex.EncodeToString(g.ID[:]), Key: g.DevKey, Members: sum.Members, Since: sum.Since, MemberList: []GroupMember{}}
		for _, m := range ms {
			info.MemberList = append(info.MemberList, GroupMember{PeerID: hexID(m.Peer), Joined: m.Joined})
		}
		out = append(out, info)
	}
	return out, nil
}

// groupRoutes adds the NetGroup admin endpoints:
//
//	GET /api/groups[?limit=N]                 totals, and per developer key its groups (default 100 listed per key)
//	GET /api/groups/{id}[?key=K][&limit=N]    the group(s) with that ID and their members (default 1000 listed)
func (s *Server) groupRoutes(mux *http.ServeMux) {
	limit := func(r *http.Request, def int) int {
		if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n >= 0 {
			return n
		}
		return def
	}
	mux.HandleFunc("GET /api/groups", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, s.Groups(limit(r, 100)))
	})
	mux.HandleFunc("GET /api/groups/{id}", func(w http.ResponseWriter, r *http.Request) {
		gs, err := s.Group(r.PathValue("id"), r.URL.Query().Get("key"), limit(r, 1000))
		switch {
		case err != nil:
			httpx.WriteError(w, http.StatusBadRequest, err.Error())
		case len(gs) == 0:
			httpx.WriteError(w, http.StatusNotFound, "no such group")
		default:
			httpx.WriteJSON(w, http.StatusOK, gs)
		}
	})
}
