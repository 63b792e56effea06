# ActionCable's Redis adapter outside Rails: the server and config.cable that Rails builds from cable.yml
require "active_support/all"   # in a Rails app, Rails has loaded it
require "action_cable"
require "logger"
require "timeout"
require "yaml"

server = ActionCable::Server::Base.new(config: ActionCable::Server::Configuration.new)
server.config.cable = YAML.load_file(File.join(__dir__, "cable.yml"))["production"].transform_keys(&:to_sym)
server.config.logger = Logger.new($stderr, level: :warn)

received = Queue.new
subscribed = Queue.new
server.pubsub.subscribe("news", ->(message) { received << message }, -> { subscribed << true })
Timeout.timeout(5) { subscribed.pop }
server.broadcast("news", { text: "hello" })   # what ActionCable.server.broadcast does in a Rails app
puts Timeout.timeout(5) { received.pop }
server.pubsub.shutdown
