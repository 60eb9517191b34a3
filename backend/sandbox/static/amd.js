// A small AMD loader (define/require) standing in for the RequireJS that Kommo runs. It resolves
// ids the way RequireJS does for a widget loaded by URL: "./x.js" relative to the requiring
// module's URL, URLs and absolute paths as they are, and no ".js" added to a URL-like id (so a
// widget that forgets the suffix fails here as it would in Kommo). Named modules ("jquery") are
// registered with define('name', ...).
(function (global) {
  'use strict';

  var modules = {};  // id -> {deps, factory, base, promise, exports, defined}
  var loading = {};  // url -> Promise of the script's load

  function urlLike(id) {
    return /^(\/|[a-z][a-z0-9+.-]*:)/i.test(id) || /\.js(\?.*)?$/.test(id) || /\?/.test(id);
  }

  function resolve(id, base) {
    if (/^\.\.?\//.test(id)) {
      return new URL(id, base || global.location.href).href;
    }
    if (urlLike(id)) {
      return new URL(id, global.location.href).href;
    }
    return id;  // a named module
  }

  function record(id) {
    if (!modules[id]) {
      modules[id] = {defined: false};
    }
    return modules[id];
  }

  function define(name, deps, factory) {
    if (typeof name !== 'string') {
      factory = deps;
      deps = name;
      name = null;
    }
    if (!Array.isArray(deps)) {
      factory = deps;
      deps = typeof factory === 'function' && factory.length ? ['require', 'exports', 'module'] : [];
    }
    var script = document.currentScript;
    var id = name || (script && script.src);
    if (!id) {
      throw new Error('an anonymous define() outside a script loaded by require()');
    }
    var mod = record(id);
    mod.deps = deps;
    mod.factory = factory;
    mod.base = name ? global.location.href : id;
    mod.defined = true;
  }
  define.amd = {};

  function loadScript(url) {
    if (!loading[url]) {
      loading[url] = new Promise(function (done, fail) {
        var tag = document.createElement('script');
        tag.src = url;
        tag.async = true;
        tag.onload = function () { done(); };
        tag.onerror = function () { fail(new Error('could not load ' + url)); };
        document.head.appendChild(tag);
      });
    }
    return loading[url];
  }

  function instantiate(id) {
    var mod = record(id);
    if (mod.promise) {
      return mod.promise;
    }
    var ready = mod.defined ? Promise.resolve()
      : urlLike(id) ? loadScript(id) : Promise.reject(new Error('no module named ' + id));
    mod.promise = ready.then(function () {
      if (!mod.defined) {  // a plain script: no define() call
        mod.exports = undefined;
        return mod.exports;
      }
      var module = {id: id, exports: {}};
      return Promise.all(mod.deps.map(function (dep) {
        if (dep === 'require') { return localRequire(mod.base); }
        if (dep === 'exports') { return module.exports; }
        if (dep === 'module') { return module; }
        return instantiate(resolve(dep, mod.base));
      })).then(function (values) {
        var result = typeof mod.factory === 'function' ? mod.factory.apply(global, values) : mod.factory;
        mod.exports = result !== undefined ? result : module.exports;
        return mod.exports;
      });
    });
    return mod.promise;
  }

  function localRequire(base) {
    return function (deps, callback, errback) {
      if (typeof deps === 'string') {
        var mod = modules[resolve(deps, base)];
        if (!mod || !('exports' in mod)) {
          throw new Error('module ' + deps + ' is not loaded yet');
        }
        return mod.exports;
      }
      Promise.all(deps.map(function (dep) { return instantiate(resolve(dep, base)); }))
        .then(function (values) {
          if (callback) { callback.apply(global, values); }
        }, function (error) {
          if (errback) { errback(error); } else { setTimeout(function () { throw error; }); }
        });
      return undefined;
    };
  }

  var require = localRequire(null);
  require.config = function () { return require; };
  global.define = define;
  global.require = require;
  global.requirejs = require;
})(window);
