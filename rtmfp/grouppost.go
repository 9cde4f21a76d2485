package rtmfp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/group"
)

// Posting: Post floods each post to every member once.

// ErrPostingDisabled is returned by Post in a group without
// postingEnabled, or without the posting password the groupspec asks for.
var ErrPostingDisabled = errors.New("rtmfp: posting is not enabled in this group (or needs its posting password)")

// Post sends a message to every member of the group and returns its
// message ID (hex SHA-256 of the message as sent). Each member gets
// NetGroup.Posting.Notify once: members forward a post they have not
// seen to their neighbours and drop those they have. Every call is a new
// message (a random stamp follows the value on the wire), so posting the
// same value twice delivers it twice. Posts reach the members connected
// through the current neighbours; a member with no neighbour yet misses
// them. message is any value the amf package encodes; strings and
// numbers are what librtmfp members can read. A member whose application
// does not read Status in time loses NetGroup.Posting.Notify events (see
// Status); each neighbour may send at most 100 posts and 256 KiB of posts
// a second (twice that at once), beyond which its posts are dropped.
func (ng *NetGroup) Post(message any) (string, error) {
	if !ng.sp.Posting || ng.sp.PostingHash != nil && !group.PasswordMatches(ng.sp.PostingHash, ng.sp.PostingAuth) {
		return "", ErrPostingDisabled
	}
	stamp := make([]byte, group.StampLen)
	rand.Read(stamp)
	msg, err := group.AppendPost(nil, message, stamp)
	if err != nil {
		return "", err
	}
	if len(msg) > group.MaxPost {
		return "", fmt.Errorf("rtmfp: post of %d bytes, more than %d", len(msg), group.MaxPost)
	}
	id := group.PostID(msg)
	if !ng.do(func() {
		ng.remember(id, msg, time.Now())
		ng.c.postsSent.Add(1)
		ng.log.Debug("posting", "id", id[:8], "neighbors", len(ng.links))
		for _, l := range ng.links {
			if l.connected {
				l.sendPost(msg)
			}
		}
	}) {
		return "", ErrGroupClosed
	}
	return id, nil
}

// remember records a post's ID, and keeps its body for replay to new
// neighbours: only while it may be replayed, and within the bytes a
// replay sends at most (a flood of posts cannot make the group hold more).
func (ng *NetGroup) remember(id string, msg []byte, now time.Time) {
	ng.seen[id] = now
	ng.seenQ = append(ng.seenQ, seenPost{id, now})
	ng.recent = append(ng.recent, recentPost{now, msg})
	ng.recentBytes += len(msg)
	ng.forget(now)
}

// forget drops post IDs past their memory or count and bodies past their
// replay time or byte budget.
func (ng *NetGroup) forget(now time.Time) {
	for len(ng.seenQ) > 0 && (now.Sub(ng.seenQ[0].at) > groupPostMemory || len(ng.seenQ) > groupMaxSeen) {
		delete(ng.seen, ng.seenQ[0].id)
		ng.seenQ = ng.seenQ[1:]
	}
	for len(ng.recent) > 0 && (now.Sub(ng.recent[0].at) > groupPostReplay || ng.recentBytes > groupReplayMax) {
		ng.recentBytes -= len(ng.recent[0].msg)
		ng.recent = ng.recent[1:]
	}
}

// replayPosts sends a new neighbour the posts of the last few seconds: a
// post that was flooding while the neighbourship formed would otherwise
// miss the members behind it. Duplicates are dropped by ID as usual.
func (ng *NetGroup) replayPosts(l *groupLink, now time.Time) {
	ng.forget(now)
	for _, p := range ng.recent {
		l.sendPost(p.msg)
	}
}

// onPost floods a post onwards the first time it is seen.
func (ng *NetGroup) onPost(from *groupLink, msg []byte) {
	if !ng.sp.Posting {
		ng.c.postsDropped.Add(1)
		return
	}
	if now := time.Now(); !from.postCount.take(now, groupPostRate, 1) || !from.postBytes.take(now, groupPostByteRate, float64(len(msg))) {
		ng.c.postsDropped.Add(1) // a neighbour flooding the group
		return
	}
	v, id, ok, err := group.ParsePost(msg)
	if err != nil {
		ng.c.postsDropped.Add(1)
		return
	}
	if !ok {
		return // a post key message: nothing to deliver
	}
	if _, dup := ng.seen[id]; dup {
		ng.c.postsDuplicate.Add(1)
		return
	}
	ng.remember(id, msg, time.Now())
	ng.c.postsReceived.Add(1)
	ng.log.Debug("post", "id", id[:8], "from", groupLog(from.id))
	ng.emit(flash.LevelStatus, GroupPostingNotify, "post received", "message", v, "messageID", id)
	for _, l := range ng.links {
		if l != from && l.connected {
			l.sendPost(msg)
		}
	}
}

// bucket is a token bucket: rate per second, bursts of two seconds' worth.
type bucket struct {
	tokens float64
	at     time.Time
}

func (b *bucket) take(now time.Time, rate, n float64) bool {
	if b.at.IsZero() {
		b.tokens = 2 * rate
	} else if d := now.Sub(b.at).Seconds(); d > 0 {
		b.tokens = min(2*rate, b.tokens+d*rate)
	}
	b.at = now
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}
