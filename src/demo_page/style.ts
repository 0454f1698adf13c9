/**
 * @module demo_page/style
 * The demo page's stylesheet. Wide screens: the friends list beside the conversation. Narrow ones
 * (phones, up to 640 px): the friends list collapses into one scrolling row above the
 * conversation, and nothing is wider than the screen (the Send button stays in view).
 */

export const STYLE: string = `
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html, body { height: 100%; }
body { margin: 0; font: 15px/1.4 system-ui, sans-serif; color: #1d2330; background: #eef1f6;
  display: flex; flex-direction: column; height: 100dvh; overflow: hidden; }
header { flex: none; display: flex; gap: 1rem; align-items: baseline; padding: .7rem 1.2rem;
  background: #27344f; color: #fff; white-space: nowrap; min-width: 0; }
header h1 { font-size: 1.1rem; margin: 0; }
#me { font-weight: 600; overflow: hidden; text-overflow: ellipsis; }
.status { margin-left: auto; font-size: .85rem; opacity: .85; overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.status.open::before { content: "● "; color: #4cd37b; }
main { flex: 1; min-height: 0; display: grid; grid-template-columns: 220px minmax(0, 1fr); gap: 1rem; padding: 1rem; }
aside, section { background: #fff; border-radius: 10px; padding: .8rem; box-shadow: 0 1px 3px #0002; min-width: 0; }
aside { overflow-y: auto; }
section { display: flex; flex-direction: column; min-height: 0; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
ul { list-style: none; margin: 0 0 1rem; padding: 0; }
.friend { display: flex; gap: .5rem; align-items: center; padding: .4rem .5rem; border-radius: 6px; cursor: pointer; }
.friend:hover { background: #f0f3f8; }
.friend.selected { background: #dde6f7; }
.dot { flex: none; width: .7rem; height: .7rem; border-radius: 50%; }
.dot.online { background: #2fb463; }
.dot.offline { background: #fff; border: 2px solid #8d96a6; }
.dot.unknown { background: #c4c9d2; }
.unread { margin-left: auto; background: #d9453b; color: #fff; border-radius: 9px; padding: 0 .4rem; font-size: .75rem; }
.unread:empty { display: none; }
.seen { color: #777; font-size: .7rem; }
.seen:empty { display: none; }
.mute { margin-left: auto; border: none; background: none; cursor: pointer; padding: 0 .2rem; }
.unread:not(:empty) + .mute { margin-left: 0; }
.switch { display: block; font-size: .8rem; margin: 0 0 .5rem; }
#add { display: flex; gap: .3rem; }
#add input { width: 6rem; min-width: 0; }
.log { flex: 1; min-height: 0; overflow-y: auto; list-style: none; margin: 0; padding: .2rem; display: flex; flex-direction: column; gap: .4rem; }
.older { align-self: center; }
.older button { font-size: .8rem; }
.msg { max-width: 75%; padding: .4rem .7rem; border-radius: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
.msg.theirs { align-self: flex-start; background: #eef1f6; }
.msg.mine { align-self: flex-end; background: #2f6fde; color: #fff; }
.msg.failed { background: #b3261e; }
.meta { display: block; font-size: .7rem; opacity: .8; text-align: right; }
.tick { white-space: nowrap; }
.tick.pending { opacity: .7; }
.tick.sent { color: #bccbe8; }
.tick.delivered { color: #fff; font-weight: 700; }
.tick.read { color: #0b3a75; background: #8ff3ff; border-radius: 6px; padding: 0 .35rem; margin-left: .25rem; font-weight: 800; }
.actions { display: flex; gap: .4rem; justify-content: flex-end; margin-top: .3rem; }
.actions button { font-size: .75rem; padding: .1rem .5rem; }
.msg-tools { margin-left: .3rem; opacity: .35; }
.msg:hover .msg-tools, .msg:focus-within .msg-tools { opacity: 1; }
.msg-tools .more { font-size: .75rem; line-height: 1; padding: 0 .3rem; border: none; border-radius: 4px;
  background: transparent; color: inherit; cursor: pointer; }
.msg-tools .more:hover, .msg-tools .more:focus { background: #0002; }
.msg-menu { display: flex; flex-wrap: wrap; gap: .3rem; justify-content: flex-end; margin-top: .3rem; }
.msg-menu button { font-size: .75rem; padding: .1rem .5rem; }
.edited { margin-right: .3rem; font-style: italic; }
.msg.deleted .text { font-style: italic; opacity: .75; }
.edit-form { display: flex; gap: .3rem; margin: .2rem 0; }
.edit-form input { flex: 1; min-width: 8rem; }
.msg-problem { display: block; font-size: .75rem; margin-top: .2rem; }
@media (hover: none) { .msg-tools { opacity: .8; } }
#typing { min-height: 1.4em; margin: .3rem 0; font-size: .85rem; color: #5a6475; font-style: italic; }
#compose { display: flex; gap: .5rem; align-items: center; min-width: 0; }
#text { flex: 1; min-width: 0; padding: .5rem; }
#send { flex: none; }
#count { flex: none; font-size: .75rem; color: #5a6475; }
#count:empty { display: none; }
#count.full { color: #b3261e; font-weight: 600; }
#count.over { color: #fff; background: #b3261e; border-radius: 4px; padding: 0 .3rem; }
#notice { margin: .3rem 0 0; font-size: .85rem; color: #b3261e; }
#notice:empty { display: none; }
#problem { flex: none; margin: .6rem 1rem 0; padding: .5rem .8rem; border-radius: 8px; background: #fff4e5;
  color: #6b3b00; border: 1px solid #f0b46b; font-size: .9rem; overflow-wrap: anywhere; }
input, button { font: inherit; }
#help { max-width: 40rem; margin: 2rem auto; background: #fff; padding: 1rem 1.5rem; border-radius: 10px; }
code { background: #eef1f6; padding: 0 .25rem; border-radius: 4px; overflow-wrap: anywhere; }

@media (max-width: 640px) {
  header { gap: .6rem; padding: .5rem .8rem; }
  header h1 { font-size: 1rem; }
  #problem { margin: .4rem .5rem 0; font-size: .8rem; }
  main { display: flex; flex-direction: column; gap: .5rem; padding: .5rem; }
  aside { flex: none; display: flex; gap: .5rem; align-items: center; padding: .4rem; overflow: visible; }
  aside h2 { display: none; }
  #friends { flex: 1; min-width: 0; display: flex; gap: .3rem; margin: 0; overflow-x: auto; }
  .friend { flex: none; padding: .3rem .5rem; }
  #add input { width: 4.5rem; }
  section { flex: 1; padding: .5rem; }
  .msg { max-width: 85%; }
}
`;
