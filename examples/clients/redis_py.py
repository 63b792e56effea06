import redis

r = redis.Redis(unix_socket_path="/run/pubsub-relay/relay.sock")
p = r.pubsub()
p.subscribe("news")
print(p.get_message(timeout=5))   # the confirmation: from here on nothing published to "news" is missed
r.publish("news", "hello")
print(p.get_message(timeout=5))   # {'type': 'message', 'pattern': None, 'channel': b'news', 'data': b'hello'}
p.close()
r.close()
