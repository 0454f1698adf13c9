package main

// The runs: connect+authenticate, closed-loop throughput, open-loop latency, close everything.
// Replies have the shapes of ConnectReply, ThroughputReply, LatencyReply and CloseAllReply in
// bench/lib/commands.ts.

import (
	"bytes"
	"math"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func round3(ms float64) float64 { return math.Round(ms*1000) / 1000 }

// counts is a goroutine-safe tally by reason (error codes, failure kinds).
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(key string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[key]++
	c.mu.Unlock()
}

func (c *counts) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

// runTag makes client_message_ids unique across runs (the server deduplicates on them).
func runTag() string { return strconv.FormatInt(rand.Int63n(1<<40), 36) }

type connectReply struct {
	Connected  int            `json:"connected"`
	Failed     int            `json:"failed"`
	Failures   map[string]int `json:"failures"`
	FirstStart float64        `json:"firstStart"`
	LastDone   float64        `json:"lastDone"`
	Latencies  []float64      `json:"latencies"`
}

// connect opens and authenticates every user id, `concurrency` handshakes at a time.
func (g *generator) connect(cmd *command) connectReply {
	secret := []byte(cmd.Secret)
	nowS := time.Now().Unix()
	timeout := time.Duration(cmd.TimeoutMs) * time.Millisecond
	var failures counts
	var mu sync.Mutex
	latencies := make([]float64, 0, len(cmd.UserIDs))
	firstStart, lastDone := math.Inf(1), 0.0
	var next atomic.Int64
	var wg sync.WaitGroup
	lanes := cmd.Concurrency
	if lanes > len(cmd.UserIDs) {
		lanes = len(cmd.UserIDs)
	}
	one := func(id int) {
		url := cmd.URLs[(id-1)%len(cmd.URLs)]
		frame := []byte(`{"type":"authenticate","auth_token":"` + signToken(secret, id, nowS) + `"}`)
		start := nowMs()
		mu.Lock()
		firstStart = math.Min(firstStart, start)
		mu.Unlock()
		u, err := g.dial(id, url, timeout)
		if err != nil {
			failures.add("dial")
			return
		}
		failure := "timeout"
		u.write(func(b []byte) []byte { return append(b, frame...) })
		if u.flush() != nil {
			failure = "write"
		} else {
			select {
			case failure = <-u.auth:
			case <-time.After(timeout):
			}
		}
		if failure != "" {
			failures.add(failure)
			u.nc.Close()
			return
		}
		done := nowMs()
		mu.Lock()
		latencies = append(latencies, round3(done-start))
		lastDone = math.Max(lastDone, done)
		mu.Unlock()
		g.mu.Lock()
		g.users[id] = u
		g.mu.Unlock()
	}
	for l := 0; l < lanes; l++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cmd.UserIDs) {
					return
				}
				one(cmd.UserIDs[i])
			}
		}()
	}
	wg.Wait()
	return connectReply{Connected: len(latencies), Failed: len(cmd.UserIDs) - len(latencies),
		Failures: failures.snapshot(), FirstStart: firstStart, LastDone: lastDone,
		Latencies: latencies}
}

// pairSenders are the authenticated users whose partner is authenticated in this process too.
func (g *generator) pairSenders() []*user {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*user
	for _, u := range g.users {
		if p := g.users[u.partner]; p != nil && u.authed.Load() && p.authed.Load() {
			out = append(out, u)
		}
	}
	return out
}

const throughputText = "The quick brown fox jumps over the lazy dog, benchmark message"

type throughputReply struct {
	Senders      int            `json:"senders"`
	Sent         int64          `json:"sent"`
	Acked        int64          `json:"acked"`
	Delivered    int64          `json:"delivered"`
	Errors       map[string]int `json:"errors"`
	UnackedAtEnd int            `json:"unackedAtEnd"`
}

// throughput: every sender keeps `window` messages unacknowledged from t0 to t2 (closed loop);
// recipients count what arrives in [t1, t2).
func (g *generator) throughput(cmd *command) throughputReply {
	senders := g.pairSenders()
	tag := runTag()
	var errs counts
	var sending atomic.Bool
	var sent, acked, delivered atomic.Int64
	text := func(b []byte) []byte { return append(b, throughputText...) }
	// Queued only: the reader writes what its handlers queued once it has handled what arrived.
	sendOne := func(u *user) {
		u.inflight.Add(1)
		sent.Add(1)
		u.sendChat(tag, text)
	}
	answered := func(u *user) {
		u.inflight.Add(-1)
		if sending.Load() {
			sendOne(u)
		}
	}
	g.mode.Store(&handlers{
		chat: func(*user, []byte) {
			if now := nowMs(); now >= cmd.T1 && now < cmd.T2 {
				delivered.Add(1)
			}
		},
		sent: func(u *user, _ []byte) {
			acked.Add(1)
			answered(u)
		},
		error: func(u *user, code string, hasID bool) {
			errs.add(code)
			if hasID {
				answered(u)
			}
		},
	})
	defer g.mode.Store(idle)
	for _, u := range senders {
		u.inflight.Store(0)
	}
	sleepUntil(cmd.T0)
	sending.Store(true)
	for _, u := range senders {
		for i := 0; i < cmd.Window; i++ {
			sendOne(u)
		}
		_ = u.flush()
	}
	sleepUntil(cmd.T2)
	sending.Store(false)
	unacked := func() int {
		n := 0
		for _, u := range senders {
			if !u.closed.Load() {
				n += int(u.inflight.Load())
			}
		}
		return n
	}
	deadline := nowMs() + cmd.DrainMs
	for unacked() > 0 && nowMs() < deadline {
		time.Sleep(10 * time.Millisecond)
	}
	return throughputReply{Senders: len(senders), Sent: sent.Load(), Acked: acked.Load(),
		Delivered: delivered.Load(), Errors: errs.snapshot(), UnackedAtEnd: unacked()}
}

type latencyReply struct {
	Senders               int            `json:"senders"`
	Sent                  int            `json:"sent"`
	Recipient             []float64      `json:"recipient"`
	Ack                   []float64      `json:"ack"`
	RecipientFromSchedule []float64      `json:"recipientFromSchedule"`
	Lag                   []float64      `json:"lag"`
	Undelivered           int            `json:"undelivered"`
	Unacked               int            `json:"unacked"`
	Errors                map[string]int `json:"errors"`
}

var latMarker = []byte(`"message_text":"lat `)

// sendTimes reads the scheduled and actual send time out of a frame's `lat S A ...` text.
func sendTimes(frame []byte) (scheduled, actual float64, ok bool) {
	i := bytes.Index(frame, latMarker)
	if i < 0 {
		return 0, 0, false
	}
	rest := frame[i+len(latMarker):]
	field := func() (float64, bool) {
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			return 0, false
		}
		v, err := strconv.ParseFloat(string(rest[:j]), 64)
		rest = rest[j+1:]
		return v, err == nil
	}
	s, ok1 := field()
	a, ok2 := field()
	return s, a, ok1 && ok2
}

// latency: open loop. Messages are due at t0 + k/rate, sent round-robin over the senders by a
// 1 ms scheduler whatever the answers do; both the recipient and the sender time them.
func (g *generator) latency(cmd *command) latencyReply {
	senders := g.pairSenders()
	tag := runTag()
	var errs counts
	var mu sync.Mutex
	r := latencyReply{Senders: len(senders), Recipient: []float64{}, Ack: []float64{},
		RecipientFromSchedule: []float64{}, Lag: []float64{}}
	if len(senders) == 0 {
		r.Errors = errs.snapshot()
		return r
	}
	inWindow := func(s float64) bool { return s >= cmd.T1 && s < cmd.T2 }
	g.mode.Store(&handlers{
		chat: func(_ *user, frame []byte) {
			now := nowMs()
			s, a, ok := sendTimes(frame)
			if !ok || !inWindow(s) {
				return
			}
			mu.Lock()
			r.Recipient = append(r.Recipient, round3(now-a))
			r.RecipientFromSchedule = append(r.RecipientFromSchedule, round3(now-s))
			mu.Unlock()
		},
		sent: func(_ *user, frame []byte) {
			now := nowMs()
			if s, a, ok := sendTimes(frame); ok && inWindow(s) {
				mu.Lock()
				r.Ack = append(r.Ack, round3(now-a))
				mu.Unlock()
			}
		},
		error: func(_ *user, code string, _ bool) { errs.add(code) },
	})
	defer g.mode.Store(idle)
	interval := 1000 / cmd.RatePerS
	expected, k := 0, 0
	tick := func() {
		now := nowMs()
		for {
			// To the microsecond, as written into the text: the recipient's window test must
			// see the same value as the sender's.
			scheduled := math.Round((cmd.T0+float64(k)*interval)*1000) / 1000
			if scheduled > now || scheduled >= cmd.T2 {
				return
			}
			u := senders[k%len(senders)]
			k++
			actual := nowMs()
			sStr := strconv.FormatFloat(scheduled, 'f', 3, 64)
			aStr := strconv.FormatFloat(actual, 'f', 3, 64)
			u.sendChat(tag, func(b []byte) []byte {
				b = append(b, "lat "...)
				b = append(b, sStr...)
				b = append(b, ' ')
				b = append(b, aStr...)
				return append(b, " brown fox"...)
			})
			_ = u.flush()
			r.Sent++
			if inWindow(scheduled) {
				expected++
				mu.Lock()
				r.Lag = append(r.Lag, round3(actual-scheduled))
				mu.Unlock()
			}
		}
	}
	sleepUntil(cmd.T0)
	for nowMs() < cmd.T2 {
		tick()
		// Asleep until the next message is due: at low rates the generator wakes once per
		// message, at high rates each wake-up sends everything due by then.
		sleepUntil(math.Min(cmd.T0+float64(k)*interval, cmd.T2))
	}
	tick()
	deadline := nowMs() + cmd.DrainMs
	for nowMs() < deadline {
		mu.Lock()
		done := len(r.Recipient) >= expected && len(r.Ack) >= expected
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	r.Undelivered = expected - len(r.Recipient)
	r.Unacked = expected - len(r.Ack)
	r.Errors = errs.snapshot()
	return r
}

type closeAllReply struct {
	Closed    int `json:"closed"`
	Remaining int `json:"remaining"`
}

// closeAll closes every connection with a close frame and waits (bounded) for the server's close.
func (g *generator) closeAll(cmd *command) closeAllReply {
	g.mu.Lock()
	all := make([]*user, 0, len(g.users))
	for _, u := range g.users {
		all = append(all, u)
	}
	g.users = map[int]*user{}
	g.mu.Unlock()
	for _, u := range all {
		u.closeGracefully()
	}
	deadline := time.After(time.Duration(cmd.TimeoutMs) * time.Millisecond)
	remaining := 0
	for _, u := range all {
		select {
		case <-u.done:
		case <-deadline:
			deadline = closedChan
		}
		select {
		case <-u.done:
		default:
			remaining++
		}
		u.nc.Close()
	}
	return closeAllReply{Closed: len(all) - remaining, Remaining: remaining}
}

// closedChan is a channel that is always ready (used once a deadline has passed).
var closedChan = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()
