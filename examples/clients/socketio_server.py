import socketio

# every app server of the fleet: the same code, each pointed at its host's relay
mgr = socketio.AsyncRedisManager("unix:///run/pubsub-relay/relay.sock")
sio = socketio.AsyncServer(client_manager=mgr, async_mode="aiohttp")   # or "asgi"
# sio.emit("news", {...}) now reaches the clients of every server
