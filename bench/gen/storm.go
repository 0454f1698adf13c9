package main

// The storm scenario's users: long-lived, SDK-like clients. Each one connects, authenticates,
// catches up with `sync {after_seq}` from the last seq it applied (paging until has_more is
// false) and, when its connection is lost, reconnects after the SDK's backoff, over and over,
// until the run stops. A few of them chat throughout. The orchestrator marks the moment it
// stops or kills a node (`stormMark`), polls how many are back (`stormStatus`) and collects
// per-user times and every refusal (`stormReport`). Shapes: Storm* in bench/lib/commands.ts.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// stormPolicy is the reconnect behaviour under test (client/connection.ts).
type stormPolicy struct {
	// Full jitter: the n-th retry waits random() * min(CapMs, BaseMs * 2^n).
	BaseMs float64 `json:"baseMs"`
	CapMs  float64 `json:"capMs"`
	// HonorHint: a refusal's retry_after_ms is the wait (plus HintJitterMs at most), not the
	// backoff (the SDK since the login admission rate).
	HonorHint    bool    `json:"honorHint"`
	HintJitterMs float64 `json:"hintJitterMs"`
	// FirstMinFraction: the first retry after a working connection waits at least this share of
	// its ceiling (0: anywhere in [0, ceiling)).
	FirstMinFraction float64 `json:"firstMinFraction"`
}

type stormCommand struct {
	URLs        [][]string `json:"userUrls"` // per user, in order of preference
	UserIDs     []int      `json:"userIds"`
	Chatters    []int      `json:"chatters"`
	ChatEveryMs float64    `json:"chatEveryMs"`
	PageSize    int        `json:"pageSize"`
	Concurrency int        `json:"concurrency"`
	Secret      string     `json:"secret"`
	TimeoutMs   float64    `json:"timeoutMs"`
	// StartTimeoutMs bounds the wait for every user's first catch-up.
	StartTimeoutMs float64     `json:"startTimeoutMs"`
	Policy         stormPolicy `json:"policy"`
}

type pendingMsg struct {
	sentAt   float64
	firstAt  float64
	resent   bool
	recorded bool
}

type stormUser struct {
	id   int
	urls []string
	chat bool
	s    *storm
	mu   sync.Mutex
	nc   net.Conn
	mask [4]byte
	wbuf []byte
	seq  int64
	open bool // authenticated and caught up
	// syncing: a sync request is out; pending: own messages without message_sent.
	syncing bool
	pending map[string]*pendingMsg
	nextMsg int
	// received message ids (chatters only), for the "nothing lost" check.
	received map[int64]bool
	// per epoch (since the last mark)
	lostAt, authAt, backAt float64
	attempts               int
	urlIndex               int
	// release frees the initial connect's slot (once caught up or failed).
	release func()
}

type ackRecord struct {
	MessageID int64   `json:"messageId"`
	Sender    int     `json:"sender"`
	Recipient int     `json:"recipient"`
	LatencyMs float64 `json:"latencyMs"`
	SentAt    float64 `json:"sentAt"`
	Resent    bool    `json:"resent"`
}

type storm struct {
	cmd    stormCommand
	secret []byte
	// tag makes this storm's client_message_ids its own (the server deduplicates on them).
	tag     string
	users   []*stormUser
	byID    map[int]*stormUser
	stopped atomic.Bool
	// quiet: the chatters stop sending (before the report, so nothing is in flight).
	quiet atomic.Bool
	wg    sync.WaitGroup
	// since the last mark
	mu        sync.Mutex
	markAt    float64
	refusals  counts
	closes    counts
	failures  counts
	acks      []ackRecord
	chatSends int
}

var activeStorm *storm

type stormStartReply struct {
	Users      int            `json:"users"`
	CaughtUp   int            `json:"caughtUp"`
	Failures   map[string]int `json:"failures"`
	FirstStart float64        `json:"firstStart"`
	LastDone   float64        `json:"lastDone"`
}

// stormStart connects every user (`concurrency` at a time, no backoff) and returns once all are
// caught up or the timeout passed; from then on each user reconnects by the policy on its own.
func (g *generator) stormStart(cmd *command) interface{} {
	if activeStorm != nil {
		activeStorm.stop()
	}
	var sc stormCommand
	if err := json.Unmarshal(cmd.raw, &sc); err != nil {
		return map[string]string{"error": "bad storm command: " + err.Error()}
	}
	if sc.PageSize <= 0 {
		sc.PageSize = 100
	}
	s := &storm{cmd: sc, secret: []byte(sc.Secret), byID: map[int]*stormUser{}, markAt: nowMs(),
		tag: runTag()}
	activeStorm = s
	chat := map[int]bool{}
	for _, id := range sc.Chatters {
		chat[id] = true
	}
	for i, id := range sc.UserIDs {
		u := &stormUser{id: id, urls: sc.URLs[i], chat: chat[id], s: s,
			pending: map[string]*pendingMsg{}, received: map[int64]bool{}}
		binary.LittleEndian.PutUint32(u.mask[:], rand.Uint32())
		s.users = append(s.users, u)
		s.byID[id] = u
	}
	first := nowMs()
	gate := make(chan struct{}, max(1, sc.Concurrency))
	for _, u := range s.users {
		s.wg.Add(1)
		go u.run(gate)
	}
	deadline := nowMs() + sc.StartTimeoutMs
	for nowMs() < deadline {
		if s.count(func(u *stormUser) bool { return u.backAt > 0 }) == len(s.users) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	last := 0.0
	for _, u := range s.users {
		u.mu.Lock()
		last = math.Max(last, u.backAt)
		u.mu.Unlock()
	}
	return stormStartReply{Users: len(s.users), Failures: s.failures.snapshot(),
		CaughtUp:   s.count(func(u *stormUser) bool { return u.backAt > 0 }),
		FirstStart: first, LastDone: last}
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func (s *storm) count(f func(u *stormUser) bool) int {
	n := 0
	for _, u := range s.users {
		u.mu.Lock()
		if f(u) {
			n++
		}
		u.mu.Unlock()
	}
	return n
}

// stormMark starts a new epoch: what follows is counted from now.
func (g *generator) stormMark(cmd *command) interface{} {
	s := activeStorm
	if s == nil {
		return map[string]string{"error": "no storm running"}
	}
	s.mu.Lock()
	s.markAt = nowMs()
	s.refusals = counts{}
	s.closes = counts{}
	s.failures = counts{}
	s.acks = nil
	s.chatSends = 0
	s.mu.Unlock()
	for _, u := range s.users {
		u.mu.Lock()
		u.lostAt, u.authAt, u.backAt, u.attempts = 0, 0, 0, 0
		u.mu.Unlock()
	}
	return map[string]float64{"markAt": s.markAt}
}

type stormStatusReply struct {
	Users    int `json:"users"`
	Lost     int `json:"lost"`
	Authed   int `json:"authed"`
	CaughtUp int `json:"caughtUp"`
	Open     int `json:"open"`
}

func (g *generator) stormStatus(cmd *command) interface{} {
	s := activeStorm
	if s == nil {
		return map[string]string{"error": "no storm running"}
	}
	r := stormStatusReply{Users: len(s.users)}
	for _, u := range s.users {
		u.mu.Lock()
		if u.lostAt > 0 {
			r.Lost++
			if u.authAt > 0 {
				r.Authed++
			}
			if u.backAt > 0 {
				r.CaughtUp++
			}
		}
		if u.open {
			r.Open++
		}
		u.mu.Unlock()
	}
	return r
}

type stormUserTimes struct {
	ID       int     `json:"id"`
	LostAt   float64 `json:"lostAt"`
	AuthAt   float64 `json:"authAt"`
	BackAt   float64 `json:"backAt"`
	Attempts int     `json:"attempts"`
}

type stormReportReply struct {
	MarkAt    float64          `json:"markAt"`
	Users     []stormUserTimes `json:"users"`
	Refusals  map[string]int   `json:"refusals"`
	Closes    map[string]int   `json:"closes"`
	Failures  map[string]int   `json:"failures"`
	Acks      []ackRecord      `json:"acks"`
	ChatSends int              `json:"chatSends"`
	// Pending: own messages never acknowledged; Unreceived: acknowledged messages a chatting
	// recipient has not received (live or through sync).
	Pending    int     `json:"pending"`
	Unreceived []int64 `json:"unreceived"`
}

// stormReport: every user that lost its connection since the mark, with its times.
func (g *generator) stormReport(cmd *command) interface{} {
	s := activeStorm
	if s == nil {
		return map[string]string{"error": "no storm running"}
	}
	r := stormReportReply{Users: []stormUserTimes{}, Unreceived: []int64{}}
	for _, u := range s.users {
		u.mu.Lock()
		if u.lostAt > 0 {
			r.Users = append(r.Users, stormUserTimes{u.id, u.lostAt, u.authAt, u.backAt, u.attempts})
		}
		if u.chat {
			r.Pending += len(u.pending)
		}
		u.mu.Unlock()
	}
	s.mu.Lock()
	r.MarkAt = s.markAt
	r.Refusals = s.refusals.snapshot()
	r.Closes = s.closes.snapshot()
	r.Failures = s.failures.snapshot()
	r.Acks = append([]ackRecord{}, s.acks...)
	r.ChatSends = s.chatSends
	s.mu.Unlock()
	for _, a := range r.Acks {
		if p := s.byID[a.Recipient]; p != nil && p.chat {
			p.mu.Lock()
			if !p.received[a.MessageID] {
				r.Unreceived = append(r.Unreceived, a.MessageID)
			}
			p.mu.Unlock()
		}
	}
	sort.Slice(r.Unreceived, func(i, j int) bool { return r.Unreceived[i] < r.Unreceived[j] })
	return r
}

// stormQuiet stops the chatting (what was sent is still acknowledged and resent as needed).
func (g *generator) stormQuiet(cmd *command) interface{} {
	if activeStorm != nil {
		activeStorm.quiet.Store(true)
	}
	return map[string]bool{}
}

// stormStop ends every user's loop and closes its connection.
func (g *generator) stormStop(cmd *command) interface{} {
	if activeStorm == nil {
		return map[string]int{"stopped": 0}
	}
	n := len(activeStorm.users)
	activeStorm.stop()
	activeStorm = nil
	return map[string]int{"stopped": n}
}

func (s *storm) stop() {
	s.stopped.Store(true)
	for _, u := range s.users {
		u.mu.Lock()
		if u.nc != nil {
			u.nc.Close()
		}
		u.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// run is one user's life: connect, stay until the connection is lost, wait, again.
func (u *stormUser) run(gate chan struct{}) {
	defer u.s.wg.Done()
	gate <- struct{}{}
	var once sync.Once
	u.release = func() { once.Do(func() { <-gate }) }
	// attempt counts failures since the last completed catch-up (client/connection.ts).
	attempt := 0
	var hint float64
	for !u.s.stopped.Load() {
		outcome := u.session()
		u.release()
		if u.s.stopped.Load() {
			return
		}
		if outcome.caughtUp {
			attempt = 0
		}
		hint = outcome.retryAfterMs
		p := u.s.cmd.Policy
		var delay float64
		if hint > 0 && p.HonorHint {
			delay = hint + rand.Float64()*p.HintJitterMs
		} else {
			ceiling := math.Min(p.CapMs, p.BaseMs*math.Pow(2, math.Min(float64(attempt), 30)))
			low := 0.0
			if attempt == 0 {
				low = p.FirstMinFraction
			}
			delay = ceiling * (low + (1-low)*rand.Float64())
		}
		attempt++
		if outcome.dialFailed && len(u.urls) > 1 {
			u.urlIndex = (u.urlIndex + 1) % len(u.urls)
		}
		time.Sleep(time.Duration(delay * 1e6))
	}
}

type sessionOutcome struct {
	caughtUp     bool
	dialFailed   bool
	retryAfterMs float64
}

// stormFrame is what the storm's users read of any frame.
type stormFrame struct {
	Type         string  `json:"type"`
	Code         string  `json:"code"`
	RetryAfterMs float64 `json:"retry_after_ms"`
	Seq          int64   `json:"seq"`
	MessageID    int64   `json:"message_id"`
	SenderUserID int     `json:"sender_user_id"`
	HasMore      bool    `json:"has_more"`
	Data         *struct {
		MessageID       int64  `json:"message_id"`
		ClientMessageID string `json:"client_message_id"`
		RecipientUserID int    `json:"recipient_user_id"`
	} `json:"data"`
	Updates []struct {
		Type      string `json:"type"`
		Seq       int64  `json:"seq"`
		MessageID int64  `json:"message_id"`
		Sender    int    `json:"sender_user_id"`
		CMID      string `json:"client_message_id"`
	} `json:"updates"`
}

func (u *stormUser) write(payload []byte) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.nc == nil {
		return net.ErrClosed
	}
	u.wbuf = appendFrame(u.wbuf[:0], opText, u.mask, payload)
	_, err := u.nc.Write(u.wbuf)
	return err
}

func (u *stormUser) requestSync() {
	u.mu.Lock()
	if u.syncing {
		u.mu.Unlock()
		return
	}
	u.syncing = true
	after := u.seq
	u.mu.Unlock()
	b := []byte(`{"type":"sync","after_seq":`)
	b = strconv.AppendInt(b, after, 10)
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, int64(u.s.cmd.PageSize), 10)
	b = append(b, '}')
	_ = u.write(b)
}

// applied records an update's seq (and a chatter's received message); caller holds u.mu.
func (u *stormUser) applied(seq, messageID int64, sender int) {
	if seq > u.seq {
		u.seq = seq
	}
	if u.chat && messageID > 0 && sender != u.id {
		u.received[messageID] = true
	}
}

func (u *stormUser) session() sessionOutcome {
	s := u.s
	timeout := time.Duration(s.cmd.TimeoutMs) * time.Millisecond
	d := websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: 256, WriteBufferSize: 256}
	url := u.urls[u.urlIndex%len(u.urls)]
	u.mu.Lock()
	u.attempts++
	u.mu.Unlock()
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		why := "dial"
		if resp != nil {
			why = "http_" + strconv.Itoa(resp.StatusCode)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			why = "dial_timeout"
		}
		s.failures.add(why)
		return sessionOutcome{dialFailed: resp == nil}
	}
	nc := ws.UnderlyingConn()
	br := bufio.NewReaderSize(nc, 4<<10) // 10,000 users: 40 MiB, not 160
	u.mu.Lock()
	u.nc = nc
	u.syncing = false
	u.mu.Unlock()
	out := sessionOutcome{}
	authed := false
	defer func() {
		nc.Close()
		u.mu.Lock()
		u.nc = nil
		wasOpen := u.open
		u.open = false
		if (wasOpen || authed) && u.lostAt == 0 && u.backAt == 0 {
			u.lostAt = nowMs()
		}
		u.mu.Unlock()
		if authed && !out.caughtUp {
			s.failures.add("lost_before_caught_up")
		}
	}()
	token := signToken(s.secret, u.id, time.Now().Unix())
	if u.write([]byte(`{"type":"authenticate","auth_token":"`+token+`"}`)) != nil {
		s.failures.add("write")
		return out
	}
	// Nothing from the server for this long (no answer to authenticate, no sync page): the
	// connection is given up, as the SDK's keep-alive would.
	nc.SetReadDeadline(time.Now().Add(timeout))
	var payload []byte
	for {
		op, p, err := readFrame(br, payload[:0])
		payload = p
		if err != nil {
			if s.stopped.Load() {
				return out
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				s.closes.add("client_timeout")
			} else {
				s.closes.add("1006")
			}
			return out
		}
		switch op {
		case opPing:
			u.mu.Lock()
			u.wbuf = appendFrame(u.wbuf[:0], opPong, u.mask, payload)
			nc.Write(u.wbuf)
			u.mu.Unlock()
			continue
		case opClose:
			code := 1005
			if len(payload) >= 2 {
				code = int(payload[0])<<8 | int(payload[1])
			}
			s.closes.add(strconv.Itoa(code))
			u.mu.Lock()
			u.wbuf = appendFrame(u.wbuf[:0], opClose, u.mask, payload[:min(2, len(payload))])
			nc.Write(u.wbuf)
			u.mu.Unlock()
			return out
		case opText:
		default:
			continue
		}
		var f stormFrame
		if json.Unmarshal(payload, &f) != nil {
			continue
		}
		switch f.Type {
		case "authenticated":
			authed = true
			now := nowMs()
			u.mu.Lock()
			if u.authAt == 0 && u.lostAt > 0 {
				u.authAt = now
			}
			if u.seq == 0 || u.seq > f.Seq {
				// A device with no state starts from authenticated.seq (first connection).
				u.seq = f.Seq
			}
			upToDate := u.seq == f.Seq
			u.mu.Unlock()
			if upToDate {
				// Nothing missed: no sync (as the SDK), caught up at once.
				nc.SetReadDeadline(time.Time{})
				out.caughtUp = true
				u.caughtUpNow(nc)
				continue
			}
			nc.SetReadDeadline(time.Now().Add(timeout))
			u.requestSync()
		case "auth_error":
			s.refusals.add("auth_error")
		case "error":
			if !authed {
				s.refusals.add(f.Code)
				if f.RetryAfterMs > 0 {
					out.retryAfterMs = f.RetryAfterMs
				}
			} else {
				s.refusals.add("after_auth_" + f.Code)
				if f.Code == "unavailable" || f.Code == "rate_limited" {
					u.mu.Lock()
					wasSyncing := u.syncing
					u.syncing = false
					u.mu.Unlock()
					if wasSyncing {
						// The SDK abandons the connection when its catch-up is refused.
						return out
					}
				}
			}
		case "sync_result":
			u.mu.Lock()
			for _, up := range f.Updates {
				u.applied(up.Seq, up.MessageID, up.Sender)
				if up.Type == "chat_message" && up.Sender == u.id && up.CMID != "" {
					// An own message caught up: its send is acknowledged by the catch-up.
					if pm := u.pending[up.CMID]; pm != nil {
						delete(u.pending, up.CMID)
						s.recordAck(u, pm, up.MessageID, 0)
					}
				}
			}
			u.syncing = false
			more := f.HasMore && len(f.Updates) > 0
			u.mu.Unlock()
			if more {
				u.requestSync()
				continue
			}
			nc.SetReadDeadline(time.Time{})
			if !out.caughtUp {
				out.caughtUp = true
				u.caughtUpNow(nc)
			}
		case "chat_message", "message_updated", "read", "delivered", "settings_updated":
			u.mu.Lock()
			gap := f.Seq > u.seq+1 && !u.syncing && u.open
			if !u.syncing && (f.Seq == u.seq+1 || !u.open) {
				u.applied(f.Seq, f.MessageID, f.SenderUserID)
			}
			if u.chat && f.Type == "chat_message" && f.SenderUserID != u.id {
				u.received[f.MessageID] = true
			}
			u.mu.Unlock()
			if gap {
				u.requestSync()
			}
		case "message_sent":
			if f.Data == nil {
				continue
			}
			u.mu.Lock()
			if f.Seq == u.seq+1 {
				u.seq = f.Seq
			}
			pm := u.pending[f.Data.ClientMessageID]
			delete(u.pending, f.Data.ClientMessageID)
			u.mu.Unlock()
			if pm != nil {
				s.recordAck(u, pm, f.Data.MessageID, nowMs())
			}
		}
	}
}

func (s *storm) recordAck(u *stormUser, pm *pendingMsg, messageID int64, at float64) {
	if pm.firstAt < s.markAt {
		return // sent before this epoch
	}
	lat := -1.0
	if at > 0 {
		lat = round3(at - pm.firstAt)
	}
	s.mu.Lock()
	s.acks = append(s.acks, ackRecord{MessageID: messageID, Sender: u.id,
		Recipient: partnerOf(u.id), LatencyMs: lat, SentAt: pm.firstAt, Resent: pm.resent})
	s.mu.Unlock()
}

// caughtUpNow: the catch-up ended. The user is back; a chatter resends what was never
// acknowledged (same client_message_id) and starts its chatting loop.
func (u *stormUser) caughtUpNow(nc net.Conn) {
	now := nowMs()
	u.mu.Lock()
	if u.backAt == 0 {
		u.backAt = now
	}
	u.open = true
	var resend []string
	for cmid, pm := range u.pending {
		pm.resent = true
		resend = append(resend, cmid)
	}
	u.mu.Unlock()
	u.release()
	if !u.chat {
		return
	}
	for _, cmid := range resend {
		u.sendChat(cmid)
	}
	go u.chatLoop(nc)
}

func (u *stormUser) sendChat(cmid string) {
	b := []byte(`{"type":"chat_message","recipient_user_id":`)
	b = strconv.AppendInt(b, int64(partnerOf(u.id)), 10)
	b = append(b, `,"message_text":"storm `...)
	b = append(b, cmid...)
	b = append(b, `","client_message_id":"`...)
	b = append(b, cmid...)
	b = append(b, `"}`...)
	_ = u.write(b)
}

// chatLoop sends one message every ChatEveryMs while this connection is open.
func (u *stormUser) chatLoop(nc net.Conn) {
	every := time.Duration(u.s.cmd.ChatEveryMs * 1e6)
	if every <= 0 {
		return
	}
	time.Sleep(time.Duration(rand.Float64() * float64(every)))
	for !u.s.stopped.Load() && !u.s.quiet.Load() {
		u.mu.Lock()
		if u.nc != nc || !u.open {
			u.mu.Unlock()
			return
		}
		u.nextMsg++
		cmid := "s" + strconv.Itoa(u.id) + "-" + strconv.Itoa(u.nextMsg) + "-" + u.s.tag
		now := nowMs()
		u.pending[cmid] = &pendingMsg{sentAt: now, firstAt: now}
		u.mu.Unlock()
		u.s.mu.Lock()
		u.s.chatSends++
		u.s.mu.Unlock()
		u.sendChat(cmid)
		time.Sleep(every)
	}
}
