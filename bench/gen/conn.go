package main

// One benchmark user's connection: opened with gorilla/websocket's handshake, then framed by
// hand (frame.go) on the raw socket. One goroutine reads and hands every frame to the current
// run's handlers; frames to send are queued masked under a mutex and written several per write.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// handlers is what a run does with the frames its connections receive.
type handlers struct {
	chat  func(u *user, frame []byte)
	sent  func(u *user, frame []byte)
	error func(u *user, code string, hasClientMessageID bool)
}

var idle = &handlers{
	chat:  func(*user, []byte) {},
	sent:  func(*user, []byte) {},
	error: func(*user, string, bool) {},
}

type user struct {
	id      int
	partner int
	nc      net.Conn
	br      *bufio.Reader
	// wmu guards wbuf (frames queued, not yet written), seq and writes to nc.
	wmu    sync.Mutex
	wbuf   []byte
	frame  []byte
	mask   [4]byte
	seq    int64
	authed atomic.Bool
	closed atomic.Bool
	// inflight counts unacknowledged messages in the throughput run.
	inflight atomic.Int32
	// auth receives one result: "" once `authenticated` arrives, or why not.
	auth chan string
	done chan struct{}
}

type generator struct {
	mode  atomic.Pointer[handlers]
	mu    sync.Mutex
	users map[int]*user
}

func newGenerator() *generator {
	g := &generator{users: map[int]*user{}}
	g.mode.Store(idle)
	return g
}

var (
	chatPrefix = []byte(`{"type":"chat_message"`)
	sentPrefix = []byte(`{"type":"message_sent"`)
)

// frameHead is all the generator parses of a frame that is not a hot one.
type frameHead struct {
	Type            string  `json:"type"`
	Code            string  `json:"code"`
	ClientMessageID *string `json:"client_message_id"`
}

func (u *user) signalAuth(result string) {
	select {
	case u.auth <- result:
	default:
	}
}

// readLoop reads frames until the connection ends. Whatever the handlers queue in answer is
// written once the bytes already received are all handled, so a burst of acknowledgements
// becomes one write of many frames.
func (g *generator) readLoop(u *user) {
	defer close(u.done)
	var payload []byte
	for {
		op, p, err := readFrame(u.br, payload[:0])
		payload = p
		if err != nil {
			u.closed.Store(true)
			u.signalAuth("closed_1006")
			return
		}
		switch op {
		case opText:
			g.dispatch(u, payload)
		case opPing:
			u.queue(opPong, payload)
		case opClose:
			code := 1005
			if len(payload) >= 2 {
				code = int(payload[0])<<8 | int(payload[1])
			}
			u.closed.Store(true)
			u.signalAuth("closed_" + strconv.Itoa(code))
			u.queue(opClose, payload[:min(2, len(payload))])
			u.flush()
			u.nc.Close()
			return
		}
		if u.br.Buffered() == 0 {
			u.flush()
		}
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func (g *generator) dispatch(u *user, frame []byte) {
	m := g.mode.Load()
	if bytes.HasPrefix(frame, chatPrefix) {
		m.chat(u, frame)
		return
	}
	if bytes.HasPrefix(frame, sentPrefix) {
		m.sent(u, frame)
		return
	}
	var head frameHead
	if json.Unmarshal(frame, &head) != nil {
		return
	}
	switch head.Type {
	case "chat_message":
		m.chat(u, frame)
	case "message_sent":
		m.sent(u, frame)
	case "authenticated":
		u.authed.Store(true)
		u.signalAuth("")
	case "auth_error":
		u.signalAuth("auth_error")
	case "error":
		if !u.authed.Load() {
			u.signalAuth("error_" + head.Code)
		}
		m.error(u, head.Code, head.ClientMessageID != nil)
	}
}

// queue appends one masked frame to the user's pending writes.
func (u *user) queue(op byte, payload []byte) {
	u.wmu.Lock()
	u.wbuf = appendFrame(u.wbuf, op, u.mask, payload)
	u.wmu.Unlock()
}

// flush writes the pending frames, if any, in one write.
func (u *user) flush() error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if len(u.wbuf) == 0 {
		return nil
	}
	_, err := u.nc.Write(u.wbuf)
	u.wbuf = u.wbuf[:0]
	return err
}

// write queues one text frame built by `build` (into the user's scratch buffer).
func (u *user) write(build func(b []byte) []byte) {
	u.wmu.Lock()
	u.frame = build(u.frame[:0])
	u.wbuf = appendFrame(u.wbuf, opText, u.mask, u.frame)
	u.wmu.Unlock()
}

// sendChat queues a chat_message to the partner: `text`, then the user's next sequence number.
func (u *user) sendChat(tag string, text func(b []byte) []byte) {
	u.write(func(b []byte) []byte {
		u.seq++
		b = append(b, `{"type":"chat_message","recipient_user_id":`...)
		b = strconv.AppendInt(b, int64(u.partner), 10)
		b = append(b, `,"message_text":"`...)
		b = text(b)
		b = append(b, ` `...)
		b = strconv.AppendInt(b, u.seq, 10)
		b = append(b, `","client_message_id":"`...)
		b = append(b, tag...)
		b = append(b, '-')
		b = strconv.AppendInt(b, u.seq, 10)
		return append(b, `"}`...)
	})
}

// closeGracefully sends a close frame (the server answers and closes the socket).
func (u *user) closeGracefully() {
	u.queue(opClose, []byte{0x03, 0xe8}) // 1000
	_ = u.flush()
}

// dial opens a connection for user `id` and starts its reader; the caller authenticates.
// gorilla/websocket does the opening handshake; frames are then read and written here, on the
// raw socket (the targets send nothing before `authenticate`, so nothing is left in gorilla's
// buffer).
func (g *generator) dial(id int, url string, timeout time.Duration) (*user, error) {
	d := websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: 256, WriteBufferSize: 256}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	u := &user{id: id, partner: partnerOf(id), nc: ws.UnderlyingConn(),
		auth: make(chan string, 1), done: make(chan struct{})}
	u.br = bufio.NewReaderSize(u.nc, 16<<10)
	binary.LittleEndian.PutUint32(u.mask[:], rand.Uint32())
	go g.readLoop(u)
	return u, nil
}
