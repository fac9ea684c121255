# Shared by scripts/test and scripts/bench-tools (sourced, from the project's root):
# installing from Debian packages, the Go module proxy and Maven Central, once, into
# a cache that fresh clones reuse.

# Where the tools the tests and the benchmark build or download are kept.
TOOLS="${SUPERHERO_TOOLS:-$HOME/.cache/superhero-tools}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Waits until a command succeeds, at most $1 seconds.
wait_for() {
    local limit=$1; shift
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then return 1; fi
        sleep 0.1
    done
}

port_open() {
    (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1
}

# Builds package $3 of Go module $1 at version $2 into $TOOLS/bin/$4-$2, once, and
# points $TOOLS/bin/$4 at it. The module proxy serves the versions but refuses the
# version-list look-up that `go install pkg@version` makes first, so the module is
# downloaded and built where it lies.
go_build() {
    local module=$1 version=$2 package=$3 name=$4
    local out="$TOOLS/bin/$name-$version"
    if [ ! -x "$out" ]; then
        command -v go >/dev/null || return 1
        mkdir -p "$TOOLS/bin"
        local dir
        dir="$(cd "${TMPDIR:-/tmp}" && go mod download -json "$module@$version" \
            | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
        [ -n "$dir" ] || return 1
        (cd "$dir" && go build -o "$out" "./$package") || return 1
    fi
    ln -sfn "$name-$version" "$TOOLS/bin/$name"
}

# Copies the runtime jars of the pom $1 into $2/libs with Maven, once (a folder
# finished before has libs/.complete), and points $TOOLS/$3 at $2.
maven_libs() {
    local pom=$1 home=$2 name=$3
    if [ ! -f "$home/libs/.complete" ]; then
        command -v java >/dev/null || apt_install openjdk-17-jre-headless
        command -v mvn >/dev/null || apt_install maven
        rm -rf "$home/libs"
        mkdir -p "$home"
        local log="$home/maven.log"
        mvn -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$home/libs" > "$log" 2>&1 || {
            tail -n 40 "$log" >&2
            echo "Maven could not resolve $pom; see $log" >&2
            return 1
        }
        touch "$home/libs/.complete"
    fi
    ln -sfn "$(basename "$home")" "$TOOLS/$name"
}

# The version a pom's property $2 names.
pom_property() {
    sed -n "s:.*<$2>\\(.*\\)</$2>.*:\\1:p" "$1"
}

# Apache Kafka's jars (the broker and its tools), from Maven Central.
KAFKA_VERSION="$(pom_property scripts/kafka/pom.xml kafka.version)"
KAFKA_HOME="$TOOLS/kafka-$KAFKA_VERSION"
ensure_kafka_jars() {
    if [ ! -f "$KAFKA_HOME/libs/.complete" ]; then
        echo "kafka: resolving Apache Kafka $KAFKA_VERSION from Maven Central (once)"
    fi
    maven_libs scripts/kafka/pom.xml "$KAFKA_HOME" kafka || exit 1
    cp scripts/kafka/log4j2.properties "$KAFKA_HOME/log4j2.properties"
}

# Runs a Java main class of the Kafka jars, logging warnings and errors only.
kafka_java() {
    java -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.properties" \
        -Dsuperhero.kafka.log.level=WARN -cp "$KAFKA_HOME/libs/*" "$@"
}

# nsqd and NSQ's benchmark programs come from one Go module.
NSQ_MODULE=github.com/nsqio/nsq
NSQ_VERSION=v1.3.0
