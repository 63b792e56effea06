const { createClient } = require('redis');   // node-redis 4

// node-redis rejects unix:// URLs: give the socket path as socket.path
const sub = createClient({ socket: { path: '/run/pubsub-relay/relay.sock' } });
const pub = sub.duplicate();

(async () => {
  await Promise.all([sub.connect(), pub.connect()]);
  await sub.subscribe('news', async (message, channel) => {   // resolves once subscribed
    console.log(channel, message);
    await Promise.all([sub.quit(), pub.quit()]);
  });
  await pub.publish('news', 'hello');
})();
